// Command vk-applevm-shim is the per-VM helper process: vm/shim.Launch
// starts it detached as `vk-applevm-shim --dir DIR`, and it runs that VM
// (shim.Run) until the VM ends. It is its own binary, next to vk-applevm,
// so that every VM pays for the shim and its hypervisor backend only: it
// links no client-go, virtual-kubelet or CLI framework (flags come from the
// standard library), which keeps its resident memory and start-up small.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/vm/shim"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("vk-applevm-shim", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vk-applevm-shim --dir DIR [--guest DIR] [--log-level LEVEL]\n"+
			"Runs one VM's helper process; vk-applevm starts it, not users.\n")
		fs.PrintDefaults()
	}
	dir := fs.String("dir", "", "the VM's state directory")
	guestDir := fs.String("guest", guest.DefaultDir(), "directory holding the guest kernel and floor initrd, for the KVM probe ($VKAV_GUEST_DIR)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println("vk-applevm-shim", version)
		return 0
	}
	if *dir == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToUpper(*level))); err != nil {
		fmt.Fprintf(os.Stderr, "vk-applevm-shim: --log-level %q: want debug, info, warn or error\n", *level)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)
	// The shim ends with its VM, not with the signals of whoever started
	// it: Run handles SIGTERM itself as a graceful stop.
	if err := shim.Run(context.Background(), *dir, drivers(log, *guestDir)); err != nil {
		fmt.Fprintln(os.Stderr, "vk-applevm-shim:", err)
		return 1
	}
	return 0
}
