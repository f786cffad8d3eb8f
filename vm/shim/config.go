package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"
	"github.com/vk-applevm/vk-applevm/vm"
)

// Names of the files in a machine's directory.
const (
	specFile   = "spec.json"
	configFile = "shim.json"
	stateFile  = "state.json"
	logFile    = "shim.log"
	apiSocket  = "shim.sock"
	agentSock  = "agent.sock"
	// backendDir is the private directory handed to Driver.Start; a
	// backend may clean it (vm/qemu removes stale *.sock files there).
	backendDir = "hv"
)

// Defaults follow the kubelet's: containerLogMaxSize 10Mi and
// containerLogMaxFiles 5 (KubeletConfiguration), and a stop grace close to
// the pod default of 30 s minus time for the VM to power off.
const (
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 5
	DefaultStopGrace   = 10 * time.Second
	// minLogMaxSize keeps rotation sane: one maximal record (16 KiB of text
	// plus its prefix) must fit in a file.
	minLogMaxSize = 20 << 10
)

// Config is what the shim needs besides the VM spec. It is persisted as
// shim.json; the spec goes to spec.json.
type Config struct {
	// Spec describes the machine; Launch writes it to spec.json.
	Spec vm.Spec `json:"-"`
	// Driver names the vm.Driver (its Name()) the shim boots the machine with.
	Driver string `json:"driver"`
	// LogDir receives <name>.log for every log name the guest frames on the
	// log port. Empty: log frames are read and dropped.
	LogDir string `json:"logDir,omitempty"`
	// LogMaxSize is the size in bytes at which a log file is rotated
	// (default 10 MiB).
	LogMaxSize int64 `json:"logMaxSize,omitempty"`
	// LogMaxFiles is how many files of one log are kept, the live one
	// included (default 5).
	LogMaxFiles int `json:"logMaxFiles,omitempty"`
	// StopGrace is the grace period of a SIGTERM to the shim (default 10 s).
	StopGrace time.Duration `json:"stopGraceNs,omitempty"`
	// PortTimeout bounds how long the shim waits for the backend to hand
	// over a console port (default 30 s).
	PortTimeout time.Duration `json:"portTimeoutNs,omitempty"`
}

func (c *Config) setDefaults() {
	if c.LogMaxSize == 0 {
		c.LogMaxSize = DefaultLogMaxSize
	}
	if c.LogMaxFiles == 0 {
		c.LogMaxFiles = DefaultLogMaxFiles
	}
	if c.StopGrace == 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.PortTimeout == 0 {
		c.PortTimeout = 30 * time.Second
	}
}

func (c *Config) validate() error {
	if err := c.Spec.Validate(); err != nil {
		return err
	}
	var errs []error
	if c.Driver == "" {
		errs = append(errs, errors.New("driver name is empty"))
	}
	if c.LogDir != "" && !filepath.IsAbs(c.LogDir) {
		errs = append(errs, fmt.Errorf("log dir %q is not absolute", c.LogDir))
	}
	if c.LogMaxSize < minLogMaxSize {
		errs = append(errs, fmt.Errorf("log max size %d is below %d bytes", c.LogMaxSize, minLogMaxSize))
	}
	if c.LogMaxFiles < 1 {
		errs = append(errs, fmt.Errorf("log max files %d is below 1", c.LogMaxFiles))
	}
	if c.StopGrace < 0 || c.PortTimeout < 0 {
		errs = append(errs, errors.New("negative duration"))
	}
	return errors.Join(errs...)
}

// loadConfig reads shim.json and spec.json from dir.
func loadConfig(dir string) (Config, error) {
	var cfg Config
	if err := readJSON(filepath.Join(dir, configFile), &cfg); err != nil {
		return Config{}, err
	}
	if err := readJSON(filepath.Join(dir, specFile), &cfg.Spec); err != nil {
		return Config{}, err
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return Config{}, fmt.Errorf("config in %s: %w", dir, err)
	}
	return cfg, nil
}

// saveConfig writes spec.json and shim.json into dir.
func saveConfig(dir string, cfg Config) error {
	if err := writeJSONAtomic(filepath.Join(dir, specFile), cfg.Spec); err != nil {
		return err
	}
	return writeJSONAtomic(filepath.Join(dir, configFile), cfg)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// writeJSONAtomic replaces path with v's JSON so a reader sees the old or the
// new content, never a torn file: write a temp file, fsync, rename, fsync the
// directory.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	if err := renameio.WriteFile(path, b, 0o600, renameio.WithTempDir(dir)); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
