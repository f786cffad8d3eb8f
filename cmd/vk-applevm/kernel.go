package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vk-applevm/vk-applevm/guest/kernelfetch"
)

func init() {
	register(command{name: "kernel", summary: "install the arm64 guest kernel and initrd vz boots (kernel fetch)", run: runKernel})
}

func runKernel(ctx context.Context, g *globals, args []string) error {
	if len(args) > 0 && args[0] == "fetch" {
		return kernelFetch(ctx, g, args[1:])
	}
	fmt.Fprintf(os.Stderr, "Usage: vk-applevm [--guest DIR] kernel fetch [--kernel PATH] [--pin FILE] [--force] [--agent PATH]\n")
	return errUsage
}

// kernelFetch builds the guest bundle vz boots in the --guest directory:
// the pinned Kata arm64 kernel (every virtio driver built in, so no
// modules), an initrd holding the arm64 agent as /init, and bundle.json.
// Run again after `make agent` to rebuild the initrd: a kernel that already
// matches the pin is not downloaded again.
func kernelFetch(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("kernel fetch", "[--kernel PATH] [--pin FILE] [--force] [--agent PATH]")
	kernel := fs.String("kernel", "", "install this local arm64 Image instead of downloading the pinned release")
	pinFile := fs.String("pin", "", "kernel pin file (url, sha256, member, memberSha256) instead of the built-in one")
	force := fs.Bool("force", false, "download even when the installed kernel matches the pin")
	agent := fs.String("agent", defaultArm64Agent(), "the linux/arm64 guest agent that becomes the initrd's /init (make agent builds it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	dir := g.guestDir
	// Everything that can be checked locally is, before a download of
	// hundreds of megabytes.
	if err := checkBundleDirArch(dir); err != nil {
		return internal(err)
	}
	if err := checkAgentBinary(*agent); err != nil {
		return internal(err)
	}
	opts := kernelfetch.Options{Dir: dir, Kernel: *kernel, Force: *force, Logger: g.log, Progress: newProgress(os.Stderr)}
	if *pinFile != "" {
		pin, err := kernelfetch.LoadPin(*pinFile)
		if err != nil {
			return internal(err)
		}
		opts.Pin = pin
	}
	res, err := kernelfetch.Fetch(ctx, opts)
	if err != nil {
		return internal(err)
	}
	b, err := writeVZBundle(dir, res, *agent)
	if err != nil {
		return internal(err)
	}
	how := "downloaded from " + res.Source
	switch {
	case res.Cached:
		how = "already installed, matching the pin"
	case *kernel != "":
		how = "copied from " + res.Source
	}
	fmt.Printf("kernel %s (%s, sha256 %s)\ninitrd %s (agent %s)\nbundle %s\n",
		b.Kernel, how, res.SHA256, b.Initrd, *agent, filepath.Join(dir, "bundle.json"))
	return nil
}

// defaultArm64Agent is where `make agent` puts the arm64 agent: next to
// this binary in bin/.
func defaultArm64Agent() string {
	name := "vk-applevm-agent-linux-arm64"
	exe, err := os.Executable()
	if err != nil {
		return filepath.Join("bin", name)
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Join(filepath.Dir(exe), name)
}

// newProgress reports a download in steps of a tenth (or every 64 MiB
// when the server sends no length), so a log file is not flooded.
func newProgress(w *os.File) func(done, total int64) {
	const unknownStep = 64 << 20
	next := int64(0)
	return func(done, total int64) {
		if done < next {
			return
		}
		if total > 0 {
			fmt.Fprintf(w, "downloading kernel archive: %d%% of %d MiB\n", done*100/total, total>>20)
			next = done + total/10
			return
		}
		fmt.Fprintf(w, "downloading kernel archive: %d MiB\n", done>>20)
		next = done + unknownStep
	}
}
