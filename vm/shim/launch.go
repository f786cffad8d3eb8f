package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/vk-applevm/vk-applevm/internal/filetail"
	"github.com/vk-applevm/vk-applevm/internal/sockpath"
)

// readyFDEnv names the inherited pipe on which the shim reports to Launch
// whether the machine runs; it is removed from the shim's environment so the
// hypervisor does not see it.
const readyFDEnv = "VKAV_SHIM_READY_FD"

// ErrExists reports a directory that already holds a machine.
var ErrExists = errors.New("machine directory already in use")

// BinaryName is the shim executable's file name. Launch looks for it next
// to the running executable, where `make build` puts both: a binary of its
// own, so that each VM pays for the shim and its backend only, not for the
// node's client-go and virtual-kubelet (cmd/vk-applevm-shim).
const BinaryName = "vk-applevm-shim"

// BinaryEnv overrides where Launch finds the shim executable (a path), for
// layouts where it is not next to the running executable (`go run`, tests).
const BinaryEnv = "VKAV_SHIM_BINARY"

// LaunchOption adjusts Launch.
type LaunchOption func(*launchOptions)

type launchOptions struct {
	argv []string
	env  []string
}

// WithArgv sets the command that runs the shim for the directory (it must
// end up calling Run with it). Default: `vk-applevm-shim --dir DIR`, the
// shim binary found by FindBinary.
func WithArgv(argv ...string) LaunchOption {
	return func(o *launchOptions) { o.argv = argv }
}

// WithEnv adds KEY=VALUE entries to the shim's environment.
func WithEnv(env ...string) LaunchOption {
	return func(o *launchOptions) { o.env = append(o.env, env...) }
}

// Launch writes the machine's configuration into dir, starts a detached shim
// process for it (own session, stdio to dir/shim.log) and returns a Client
// once the machine is running. On failure the error carries the tails of
// shim.log and of the console log; the directory stays for inspection
// (Connect and Delete remove it).
func Launch(ctx context.Context, dir string, cfg Config, opts ...LaunchOption) (*Client, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("launch shim: %w", err)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("launch shim for %s: %w", dir, err)
	}
	// The backend's sockets sit one level deeper (e.g. hv/qmp.sock,
	// hv/port0.sock); "hv/backend.sock" stands for the longest of them.
	for _, p := range []string{filepath.Join(dir, agentSock), filepath.Join(dir, backendDir, "backend.sock")} {
		// sun_path: 108 bytes on Linux, 104 on darwin (internal/sockpath).
		if err := sockpath.Check(p); err != nil {
			return nil, fmt.Errorf("launch shim: %w", err)
		}
	}
	var o launchOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.argv == nil {
		bin, err := FindBinary()
		if err != nil {
			return nil, fmt.Errorf("launch shim: %w", err)
		}
		o.argv = []string{bin, "--dir", dir}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("launch shim: create %s: %w", dir, err)
	}
	if fileExists(filepath.Join(dir, stateFile)) {
		return nil, fmt.Errorf("launch shim in %s: %w", dir, ErrExists)
	}
	if err := saveConfig(dir, cfg); err != nil {
		return nil, fmt.Errorf("launch shim: %w", err)
	}
	report, err := startShim(dir, o)
	if err != nil {
		return nil, err
	}
	select {
	case msg := <-report.msgs:
		if msg.Error != "" || msg.Status != StatusRunning {
			cause := msg.Error
			if cause == "" {
				cause = "shim exited before the machine ran"
				if st, err := readState(dir); err == nil && st.Error != "" {
					cause += ": " + st.Error
				}
			}
			return nil, launchError(dir, cfg, errors.New(cause))
		}
	case <-ctx.Done():
		// Nobody else knows this shim yet: stop it (its hypervisor dies
		// with it).
		_ = report.proc.Kill()
		return nil, launchError(dir, cfg, ctx.Err())
	}
	return newClient(dir), nil
}

// FindBinary returns the shim executable Launch runs: $VKAV_SHIM_BINARY,
// else vk-applevm-shim next to the running executable (next to the path it
// was started by, then next to that path with symlinks resolved, so an
// installed symlink to a build directory works). The error says how to
// build it.
func FindBinary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("shim binary from $%s: %w", BinaryEnv, err)
		}
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the shim binary: find own executable: %w", err)
	}
	candidates := []string{filepath.Join(filepath.Dir(exe), BinaryName)}
	if real, err := filepath.EvalSymlinks(exe); err == nil && filepath.Dir(real) != filepath.Dir(exe) {
		candidates = append(candidates, filepath.Join(filepath.Dir(real), BinaryName))
	}
	for _, c := range candidates {
		if checkExecutable(c) == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("no shim binary %s next to %s: build it with `make build` (or `go build -o %s ./cmd/vk-applevm-shim`), or set $%s to its path",
		BinaryName, exe, candidates[0], BinaryEnv)
}

func checkExecutable(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() || info.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

type readyMsg struct {
	Status Status `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

type startedShim struct {
	proc *os.Process
	msgs chan readyMsg // one message; a zero one when the shim died silently
}

func startShim(dir string, o launchOptions) (*startedShim, error) {
	logf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("launch shim: open log: %w", err)
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("launch shim: ready pipe: %w", err)
	}
	defer pw.Close()
	cmd := exec.Command(o.argv[0], o.argv[1:]...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw} // fd 3
	cmd.Env = append(append(os.Environ(), o.env...), readyFDEnv+"=3")
	// A session of its own: the node's terminal, process group and
	// restarts do not reach the shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pr.Close()
		return nil, fmt.Errorf("launch shim %s: %w", o.argv[0], err)
	}
	// Reap the shim when it exits while this process still runs; after a
	// node restart init (or a subreaper) does.
	go func() { _ = cmd.Wait() }()
	s := &startedShim{proc: cmd.Process, msgs: make(chan readyMsg, 1)}
	go func() {
		defer pr.Close()
		b, _ := io.ReadAll(pr)
		var msg readyMsg
		if len(bytes.TrimSpace(b)) > 0 {
			if err := json.Unmarshal(b, &msg); err != nil {
				msg.Error = "unreadable report from shim: " + strconv.Quote(string(b))
			}
		}
		s.msgs <- msg
	}()
	return s, nil
}

func launchError(dir string, cfg Config, cause error) error {
	return fmt.Errorf("launch machine %s: %w\n--- %s (tail) ---\n%s--- %s (tail) ---\n%s",
		cfg.Spec.ID, cause,
		filepath.Join(dir, logFile), tailFile(filepath.Join(dir, logFile), 20),
		cfg.Spec.ConsoleLog, tailFile(cfg.Spec.ConsoleLog, 20))
}

// tailFile returns the last lines of a file (at most 4 KiB), or a note why
// it cannot.
func tailFile(path string, lines int) string {
	b, err := filetail.Last(path, 4<<10)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	if len(b) == 0 {
		return "(empty)\n"
	}
	parts := bytes.SplitAfter(b, []byte{'\n'})
	if len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1]
	}
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	out := bytes.Join(parts, nil)
	if out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return string(out)
}

// readyPipe is the shim's end of the report to Launch.
type readyPipe struct{ f *os.File }

func takeReadyPipe() *readyPipe {
	v, ok := os.LookupEnv(readyFDEnv)
	if !ok {
		return &readyPipe{}
	}
	os.Unsetenv(readyFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return &readyPipe{}
	}
	// Inherited descriptors lack close-on-exec; the hypervisor must not
	// keep the pipe open, or Launch would not see its end.
	syscall.CloseOnExec(fd)
	return &readyPipe{f: os.NewFile(uintptr(fd), "shim-ready")}
}

func (p *readyPipe) ok()            { p.send(readyMsg{Status: StatusRunning}) }
func (p *readyPipe) fail(err error) { p.send(readyMsg{Error: err.Error()}) }

func (p *readyPipe) send(m readyMsg) {
	if p.f == nil {
		return
	}
	_ = json.NewEncoder(p.f).Encode(m)
	p.close()
}

func (p *readyPipe) close() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
}
