package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

// globals are the flags before the command name.
type globals struct {
	root     string
	guestDir string
	logLevel slog.Level
	log      *slog.Logger
}

func defaultRoot() string {
	if r := os.Getenv("VKAV_ROOT"); r != "" {
		return r
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

func parseGlobals(args []string) (*globals, []string, error) {
	g := &globals{}
	fs := flag.NewFlagSet("vk-applevm", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&g.root, "root", defaultRoot(), "state directory (images, VMs, logs)")
	fs.StringVar(&g.guestDir, "guest", defaultGuestDir(), "directory holding the guest kernel and initrd (bundle.json)")
	level := fs.String("log-level", "", "log level: debug, info, warn, error (default: info for the node and the shim, warn for the CLI)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if *level == "" {
		*level = "warn"
		if rest := fs.Args(); len(rest) > 0 && (rest[0] == "node" || rest[0] == "shim") {
			*level = "info"
		}
	}
	if err := g.logLevel.UnmarshalText([]byte(strings.ToUpper(*level))); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: %w", *level, err)
	}
	g.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: g.logLevel}))
	slog.SetDefault(g.log)
	return g, fs.Args(), nil
}

// newFlags returns a flag set for a command that prints its usage on -h.
func newFlags(name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: vk-applevm %s %s\n\nFlags:\n", name, usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a command's flags, turning -h and bad flags into
// errUsage (the flag package has printed the message).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return &exitError{code: 0}
		}
		return errUsage
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
