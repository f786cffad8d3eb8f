// Command testregistry serves an in-memory OCI registry over plain HTTP,
// optionally holding the busybox test image, for e2e tests and `make run`
// (start it inside a network namespace with `ip netns exec`).
//
//	testregistry --listen 10.201.0.1:5000 --push-busybox busybox:latest
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5000", "address to serve on (host:port; port 0 picks one)")
	pushBusybox := flag.String("push-busybox", "", "push the busybox test image under this name (repo[:tag])")
	addrFile := flag.String("addr-file", "", "write the address served on to this file once ready")
	cacheDir := flag.String("cache-dir", imagetest.DefaultCacheDir(), "where a downloaded busybox-static package is kept")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *pushBusybox, *addrFile, *cacheDir); err != nil {
		fmt.Fprintln(os.Stderr, "testregistry:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done.
func run(ctx context.Context, listen, pushBusybox, addrFile, cacheDir string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	reg, err := imagetest.NewRegistry(imagetest.OnListener(ln))
	if err != nil {
		return err
	}
	defer reg.Close()
	if pushBusybox != "" {
		img, err := imagetest.BuildBusybox(ctx, cacheDir)
		if err != nil {
			return err
		}
		ref, err := reg.PushImage(ctx, pushBusybox, img)
		if err != nil {
			return err
		}
		digest, err := img.Digest()
		if err != nil {
			return fmt.Errorf("busybox digest: %w", err)
		}
		slog.Info("pushed busybox", "ref", ref, "digest", digest.String())
	}
	if addrFile != "" {
		if err := os.WriteFile(addrFile, []byte(reg.Addr+"\n"), 0o644); err != nil {
			return fmt.Errorf("write address file: %w", err)
		}
	}
	slog.Info("serving registry", "addr", reg.Addr)
	<-ctx.Done()
	return nil
}
