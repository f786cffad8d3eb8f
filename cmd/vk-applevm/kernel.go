package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vk-applevm/vk-applevm/guest/kernelfetch"
)

func init() { register(newKernelCommand) }

type kernelFetchFlags struct {
	kernel, pin, agent string
	force              bool
}

func newKernelCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Install the arm64 guest kernel and initrd vz boots (kernel fetch)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(cmd, "unknown command %q: want fetch", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var f kernelFetchFlags
	fetch := &cobra.Command{
		Use:   "fetch [--kernel PATH] [--pin FILE] [--force] [--agent PATH]",
		Short: "Install the pinned kernel (downloaded, SHA-256 checked) and build the initrd",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return kernelFetch(cmd.Context(), g, f) },
	}
	fetch.Flags().StringVar(&f.kernel, "kernel", "", "install this local arm64 Image instead of downloading the pinned release")
	fetch.Flags().StringVar(&f.pin, "pin", "", "kernel pin file (url, sha256, member, memberSha256) instead of the built-in one")
	fetch.Flags().BoolVar(&f.force, "force", false, "download even when the installed kernel matches the pin")
	fetch.Flags().StringVar(&f.agent, "agent", defaultArm64Agent(), "the linux/arm64 guest agent that becomes the initrd's /init (make agent builds it)")
	cmd.AddCommand(fetch)
	return cmd
}

// kernelFetch builds the guest bundle vz boots in the --guest directory:
// the pinned Kata arm64 kernel (every virtio driver built in, so no
// modules), an initrd holding the arm64 agent as /init, and bundle.json.
// Run again after `make agent` to rebuild the initrd: a kernel that already
// matches the pin is not downloaded again.
func kernelFetch(ctx context.Context, g *globals, f kernelFetchFlags) error {
	kernel, pinFile, force, agent := &f.kernel, &f.pin, &f.force, &f.agent
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
