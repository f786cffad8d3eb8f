//go:build linux

// Command vk-applevm-agent is the guest agent. As PID 1 in a VM (/init in
// the initrd) it boots the guest and serves the agent API on the
// "vkav.agent" console port. Elsewhere, `--listen unix:PATH` serves the
// same API on a unix socket (one gRPC connection per socket connection)
// for host-side tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/transport"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

// Memory tuning for the agent's 10 MiB RSS budget: collect at 50 % heap
// growth instead of 100 %, and more often still near a soft 8 MiB limit.
// GOGC and GOMEMLIMIT in the environment win (the benchmark compares).
const (
	gcPercent   = 50
	memoryLimit = 8 << 20
)

// The main goroutine keeps the main thread: the agent joins containers'
// namespaces on threads it then discards (agent.inNamespacesOf), which
// must never be the main one, as the runtime keeps it alive.
func init() { runtime.LockOSThread() }

func main() {
	// Executed again to start a container's process: that and nothing else.
	agent.MaybeContainerInit()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if os.Getpid() == 1 {
		runGuest()
		return
	}
	listen := flag.String("listen", "", "serve on unix:PATH instead of the virtio port")
	stateDir := flag.String("state-dir", "/run/vkav", "directory for container state")
	cgroupRoot := flag.String("cgroup-root", "", "cgroup2 mount for containers (empty: no cgroups)")
	sysBlock := flag.String("sys-block-dir", "/sys/block", "where disks are found by serial")
	flag.Parse()
	if err := runListen(*listen, *stateDir, *cgroupRoot, *sysBlock); err != nil {
		fmt.Fprintln(os.Stderr, "vk-applevm-agent:", err)
		os.Exit(1)
	}
}

// runGuest never returns: PID 1 exiting panics the kernel. Whatever goes
// wrong ends in a power-off, which the host sees as the VM stopping.
func runGuest() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := context.Background()
	defer func() {
		if r := recover(); r != nil {
			log.Error("agent panicked", "panic", r, "stack", string(debug.Stack()))
		}
		_ = agent.PowerOff(ctx, agent.GuestPowerOps(), time.Second, log)
		select {}
	}()
	g, err := agent.BootGuest(ctx, log)
	if err != nil {
		log.Error("boot", "err", err)
		return
	}
	// The clock follows the RTC after the VM was paused (a Mac asleep).
	clock, err := agent.NewRTCClock(agent.RTCDevice, agent.SetClock, log)
	var clockSet func(context.Context)
	if err != nil {
		log.Warn("no RTC: the clock will lag after the VM is paused", "err", err)
	} else {
		go clock.Run(ctx, agent.ClockCheckInterval)
		clockSet = func(ctx context.Context) {
			if err := clock.CalibrateAfter(ctx, agent.CalibrationDelay); err != nil {
				log.Warn("measure the RTC's phase", "err", err)
			}
		}
	}
	cfg := agent.Config{
		Version:  version,
		ClockSet: clockSet,
		Log:      log,
		Reaper:   g.Reaper,
		Modules:  g.Modules,
		LogSink:  g.LogPort,
		PowerOff: func() {
			_ = agent.PowerOff(ctx, agent.GuestPowerOps(), time.Second, log)
		},
		PowerButton: g.PowerButton.Presses(),
	}
	if g.Template {
		cfg.TemplateGuest = true
		cfg.ReseedRandom = func() error { return agent.ReseedRandom(agent.HWRNGDevice) }
	}
	srv, err := agent.New(cfg)
	if err != nil {
		log.Error("start agent", "err", err)
		return
	}
	l := transport.Listen(ctx, g.AgentPort, log)
	log.Info("agent serving", "version", version, "port", g.AgentPort.Path)
	if err := srv.Serve(ctx, l); err != nil {
		log.Error("serve", "err", err)
	}
}

func runListen(listen, stateDir, cgroupRoot, sysBlock string) error {
	path, ok := strings.CutPrefix(listen, "unix:")
	if !ok || path == "" {
		return fmt.Errorf("not PID 1: --listen unix:PATH is required (got %q)", listen)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reaper := agent.NewReaper(false, nil, log)
	go reaper.Run(ctx)
	ctx, shutdown := context.WithCancel(ctx)
	defer shutdown()
	srv, err := agent.New(agent.Config{
		Version:     version,
		Log:         log,
		StateDir:    stateDir,
		SysBlockDir: sysBlock,
		CgroupRoot:  cgroupRoot,
		NoCgroups:   cgroupRoot == "",
		Reaper:      reaper,
		PowerOff:    shutdown,
	})
	if err != nil {
		return err
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	log.Info("agent serving", "version", version, "socket", path)
	serveErr := srv.Serve(ctx, l)
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(serveErr, srv.Close(closeCtx))
}
