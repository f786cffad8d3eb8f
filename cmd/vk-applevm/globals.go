package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vk-applevm/vk-applevm/guest"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

// globals are the flags every command takes.
type globals struct {
	root     string
	guestDir string
	level    string
	// templates resumes VMs from saved templates of their shape
	// (container/vmtemplate) instead of booting them.
	templates bool
	logLevel  slog.Level
	log       *slog.Logger
}

func defaultRoot() string {
	home, _ := os.UserHomeDir()
	return rootFor(runtime.GOOS, os.Geteuid(), home, os.Getenv("VKAV_ROOT"))
}

// rootFor picks the state root: $VKAV_ROOT, else on a Mac for a user other
// than root ~/Library/Application Support/vk-applevm (the node runs as the
// logged-in user, a launchd agent, since vz needs no root, and /var/lib is
// root's there), else /var/lib/vk-applevm.
func rootFor(goos string, euid int, home, env string) string {
	if env != "" {
		return env
	}
	if goos == "darwin" && euid != 0 && home != "" {
		return filepath.Join(home, "Library", "Application Support", "vk-applevm")
	}
	return "/var/lib/vk-applevm"
}

func (g *globals) addFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", defaultRoot(), "state directory (images, VMs, logs; $VKAV_ROOT)")
	pf.StringVar(&g.guestDir, "guest", guest.DefaultDir(), "directory holding the guest kernel and initrd (bundle.json; $VKAV_GUEST_DIR)")
	pf.BoolVar(&g.templates, "vm-templates", false, "resume VMs from a saved template of their shape instead of booting them (QEMU; opt-in: resumed VMs share the template's kernel address layout)")
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
