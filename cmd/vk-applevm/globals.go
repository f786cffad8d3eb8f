package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

// globals are the flags every command takes.
type globals struct {
	root     string
	guestDir string
	level    string
	logLevel slog.Level
	log      *slog.Logger
}

func defaultRoot() string {
	if r := os.Getenv("VKAV_ROOT"); r != "" {
		return r
	}
	// On a Mac the node runs as the logged-in user (a launchd agent; vz
	// needs no root), who cannot write /var/lib.
	if runtime.GOOS == "darwin" && os.Geteuid() != 0 {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, "Library", "Application Support", "vk-applevm")
		}
	}
	return "/var/lib/vk-applevm"
}

// defaultGuestDir is bin/guest/<arch> next to the binary, where `make
// guest` puts the kernel and initrd, unless VKAV_GUEST_DIR says otherwise.
func defaultGuestDir() string {
	if d := os.Getenv("VKAV_GUEST_DIR"); d != "" {
		return d
	}
	exe, err := os.Executable()
	if err != nil {
		return filepath.Join("bin", "guest", runtime.GOARCH)
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Join(filepath.Dir(exe), "guest", runtime.GOARCH)
}

func (g *globals) addFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", defaultRoot(), "state directory (images, VMs, logs; $VKAV_ROOT)")
	pf.StringVar(&g.guestDir, "guest", defaultGuestDir(), "directory holding the guest kernel and initrd (bundle.json; $VKAV_GUEST_DIR)")
	pf.StringVar(&g.level, "log-level", "", "log level: debug, info, warn, error (default: info for the node, the shim and the switch, warn for the CLI)")
}

// init sets up logging once the command is known.
func (g *globals) init(cmd *cobra.Command) error {
	level := g.level
	if level == "" {
		level = "warn"
		if name := cmd.Name(); name == "node" || name == "shim" || name == "switch" {
			level = "info"
		}
	}
	if err := g.logLevel.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return usagef(cmd, "--log-level %q: want debug, info, warn or error", level)
	}
	g.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: g.logLevel}))
	slog.SetDefault(g.log)
	return nil
}
