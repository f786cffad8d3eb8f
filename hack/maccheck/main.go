// Command maccheck is `make mac-check`: the one command to run on the first
// real Mac, and on every new one. It drives the built binaries as a user
// types them — `vk-applevm doctor`; a busybox VM booted with `run`; the
// agent's round trip through `exec`; a second VM's exit code; HTTP from one
// VM to the other through the pod network's switch; chown on an
// emptyDir-style disk volume (`run -v /data`); a stop well within its
// grace period, the SIGTERM delivered by the agent; Rosetta when it is
// installed — and prints two
// Markdown tables, the versions that matter (OS, chip, SDK, vz, kernel) and
// each check's verdict, to paste into a report. It exits 1 when a check
// fails.
//
// On Linux the same checks run on QEMU (Rosetta is "n/a" there) as part of
// `make test`, so the command the Mac runs is itself tested.
//
//	go run ./hack/maccheck [-bin bin/vk-applevm] [-guest bin/guest/ARCH] [-v]
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/internal/fdhygiene"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
)

func main() {
	// Under `flock LOCK make mac-check` the lock's descriptor is inherited;
	// the pod network's switch this run starts must not hold it.
	fdhygiene.CloseInherited()
	bin := flag.String("bin", filepath.Join("bin", "vk-applevm"), "the vk-applevm binary (vk-applevm-shim must sit next to it)")
	guestDir := flag.String("guest", filepath.Join("bin", "guest", runtime.GOARCH), "the guest bundle (make guest; on a Mac make guest-darwin)")
	verbose := flag.Bool("v", false, "print every command with its output on stderr")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var log io.Writer = io.Discard
	if *verbose {
		log = os.Stderr
	}
	rep, err := run(ctx, *bin, *guestDir, os.Stderr, log)
	rep.Print(os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mac-check:", err)
		os.Exit(1)
	}
	if rep.Failed() {
		os.Exit(1)
	}
}

// run runs every check. progress gets one line per check as it ends; log
// every CLI command. An error means the checks could not run at all.
func run(ctx context.Context, bin, guestDir string, progress, log io.Writer) (*Report, error) {
	rep := &Report{progress: progress}
	var err error
	if bin, err = filepath.Abs(bin); err != nil {
		return rep, err
	}
	if guestDir, err = filepath.Abs(guestDir); err != nil {
		return rep, err
	}
	if _, err := os.Stat(bin); err != nil {
		return rep, fmt.Errorf("%w: build it first (make build)", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()

	rep.Versions = versions(ctx, bin, filepath.Join(filepath.Dir(bin), "vk-applevm-shim"), guestDir)
	fmt.Fprintln(progress, "mac-check: running doctor")
	runDoctor(ctx, bin, guestDir, rep)

	// Under /tmp, not $TMPDIR (/var/folders/... on a Mac): the state root
	// holds sockets, and darwin's sun_path has 104 bytes.
	tmp, err := os.MkdirTemp("/tmp", "vkav-mc-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	defer func() {
		// The CLI started the pod network's switch; it outlives the CLI.
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		if err := switchnet.Stop(sctx, root); err != nil {
			fmt.Fprintln(progress, "mac-check: stop the pod network's switch:", err)
		}
	}()
	c := &checker{
		s:     &session{bin: bin, guestDir: guestDir, root: root, log: log},
		rep:   rep,
		nonce: nonce(),
	}
	fmt.Fprintln(progress, "mac-check: building the busybox image and booting VMs")
	if err := c.setup(ctx, guestDir); err != nil {
		c.rep.add(checkBoot, Fail, "not run: %v", err)
		for _, name := range []string{checkAgent, checkExitCode, checkVMToVM, checkChown, checkStop, checkRosetta} {
			c.rep.add(name, Fail, "not run: no busybox image")
		}
		return rep, nil
	}
	defer c.registry.Close()
	c.runVMChecks(ctx)
	c.rosetta(ctx)
	c.cleanup(ctx)
	return rep, nil
}

// setup serves the busybox images from a registry on
// this machine's loopback (which the CLI pulls from over plain HTTP without
// flags, as Docker does).
func (c *checker) setup(ctx context.Context, guestDir string) error {
	arch := runtime.GOARCH
	if b, err := guest.Find(guestDir); err == nil {
		arch = b.Arch
	}
	_, statErr := os.Stat(rosettaRuntime)
	rosetta := runtime.GOOS == "darwin" && runtime.GOARCH == "arm64" && statErr == nil
	native, amd64, err := busyboxImages(ctx, arch, rosetta)
	if err != nil {
		return fmt.Errorf("build the busybox image: %w", err)
	}
	reg, err := imagetest.NewRegistry()
	if err != nil {
		return err
	}
	if c.image, err = reg.PushImage(ctx, "busybox:maccheck", native); err != nil {
		reg.Close()
		return fmt.Errorf("push busybox: %w", err)
	}
	if amd64 != nil {
		if c.amd64Image, err = reg.PushImage(ctx, "busybox-amd64:maccheck", amd64); err != nil {
			reg.Close()
			return fmt.Errorf("push the amd64 busybox: %w", err)
		}
	}
	c.registry = reg
	return nil
}

func nonce() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "maccheck-" + hex.EncodeToString(b)
}
