package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/initrdpath"
	"github.com/vk-applevm/vk-applevm/agent/transport"
)

// portPollInterval paces the wait for the console ports while their
// modules load (the port appears ~2.7 s after boot under TCG; see
// /work/shared/notes/environment.md).
const portPollInterval = 5 * time.Millisecond

// agentPortWait bounds the wait for the agent port: without it the host
// cannot reach the guest, so a VM that never shows it powers off instead
// of idling.
const agentPortWait = 2 * time.Minute

// ignoreTerminationSignals keeps PID 1 alive when something in the guest
// signals it: the kernel shields init only from signals it has no handler
// for, and Go installs handlers whose default is to exit — and init
// exiting panics the kernel.
func ignoreTerminationSignals(ctx context.Context, log *slog.Logger) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGPIPE)
	go func() {
		for {
			select {
			case sig := <-ch:
				log.Warn("PID 1 ignores signal", "signal", sig)
			case <-ctx.Done():
				return
			}
		}
	}()
}

// DeferredModules are the modules of the initrd that no container's start
// needs: virtio-fs (a container with shares asks for it, which loads it at
// once), vsock, the power button (the host stops the guest through the
// agent; the button is the fallback) and the balloon. The entropy device
// is not among them: a container's first getrandom may wait for it.
var DeferredModules = []string{"fuse", "virtiofs", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport", "button", "evdev", "virtio_balloon"}

// deferredModulesBound is when the deferred modules load in a guest whose
// container never starts a process.
const deferredModulesBound = 5 * time.Second

// Guest is what PID 1 has set up before serving.
type Guest struct {
	Reaper    *Reaper
	Modules   *ModuleLoader
	AgentPort *transport.VirtioPort
	// Template is set in a guest booted to be saved as a template
	// (TemplateEnv): it holds HeldForResume, and at Setup a machine
	// resumed from it gives its NIC the machine's MAC and reseeds its
	// random numbers (Config.TemplateGuest, ReseedRandom).
	Template bool
	// LogPort writes to the "vkav.log" port once it appears.
	LogPort io.Writer
	// PowerButton delivers presses of the power button (Config.PowerButton).
	PowerButton *PowerButton
}

// BootGuest does PID 1's duties up to the point where the agent can serve:
// a root that is not the initramfs itself, system mounts, console stdio, oom_score_adj, the reaper, module loading
// (in the background: serving starts as soon as the agent port exists),
// and the console ports. What serving does not need — the modules after
// the console port's, the loopback device, then the power button
// (WatchPowerButton) — follows on the loader's thread at the lowest
// priority: with one vCPU it would otherwise hold up
// the agent's first answer (hack/bench measures the boot against a
// trivial init). Failures that leave the guest usable are logged, not
// returned.
func BootGuest(ctx context.Context, log *slog.Logger) (*Guest, error) {
	ignoreTerminationSignals(ctx, log)
	if err := LeaveInitramfs(InitramfsBind); err != nil {
		log.Error("containers cannot pivot_root", "err", err)
	}
	if err := MountSystem("/", SystemMounts); err != nil {
		log.Error("mount system filesystems", "err", err)
	}
	if err := ConsoleStdio("/dev/console"); err != nil {
		log.Error("console stdio", "err", err)
	}
	if err := SetOOMScoreAdj(0, -1000); err != nil {
		log.Error("protect the agent from the OOM killer", "err", err)
	}
	if err := os.WriteFile(PerCPUPageListHighFractionSysctl, []byte(strconv.Itoa(PerCPUPageListHighFraction)), 0); err != nil {
		log.Warn("shrink the per-CPU free page lists", "err", err)
	}
	g := &Guest{Reaper: NewReaper(true, nil, log)}
	go g.Reaper.Run(ctx)

	list, err := ReadModuleList(initrdpath.ModulesList)
	if err != nil {
		log.Error("read kernel module list", "err", err)
	}
	g.Modules = NewModuleLoader(initrdpath.ModulesDir, list, FinitModule, log)
	// Containers wait for the loader's Done, which follows the loopback.
	g.Modules.AfterModule(portModule, func() {
		if err := lowerThreadPriority(); err != nil {
			log.Warn("lower the priority of background boot work", "err", err)
		}
		if err := LoopbackUp(); err != nil {
			log.Error("bring loopback up", "err", err)
		}
	})
	// What no container start needs loads after the first container's
	// process has run a while (Server.firstProcessStarted), or without a
	// container once deferredModulesBound has passed.
	if g.Template = os.Getenv(TemplateEnv) != ""; g.Template {
		// The deferred modules' devices are the same in every machine of
		// the shape: they load before the save, and only the drivers of
		// devices with per-machine host ends wait for Setup.
		g.Modules.Defer(0, HeldForResume...)
	} else {
		g.Modules.Defer(deferredModulesBound, DeferredModules...)
	}
	go g.Modules.Run(ctx)
	go func() {
		// A loaded module lives in kernel memory; its file would stay in
		// the initramfs, about 2 MB of guest memory never read again,
		// which free page reporting can then give back to the host.
		<-g.Modules.Done()
		if err := os.RemoveAll(initrdpath.ModulesDir); err != nil {
			log.Warn("remove the loaded modules' files", "err", err)
		}
		// After virtio_balloon registered: Linux before 6.2 overwrites the
		// order when a reporting device registers.
		if err := SetPageReportingOrder(initrdpath.PageReportingOrderFile, PageReportingOrderParam); err != nil {
			log.Warn("set the free page reporting order", "err", err)
		}
	}()
	g.PowerButton = WatchPowerButton(ctx, SysClassInput, "/dev", g.Modules.Done(), log)

	portCtx, cancel := context.WithTimeout(ctx, agentPortWait)
	defer cancel()
	agentPath, err := transport.WaitForPort(portCtx, transport.SysPortsDir, "/dev", transport.AgentPortName, portPollInterval)
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	g.AgentPort = &transport.VirtioPort{Path: agentPath, Log: log}
	g.LogPort = &portWriter{ctx: ctx, name: transport.LogPortName, log: log}
	return g, nil
}

// logPortWait bounds the wait for the log port, which the host announces
// separately from the agent port; a VM without one gets its container
// output discarded rather than blocked.
const logPortWait = 10 * time.Second

// portWriter opens a console port on first write, waiting for it to
// appear. Only the log queue's writer goroutine uses it.
type portWriter struct {
	ctx  context.Context
	name string
	log  *slog.Logger
	w    io.Writer
}

func (p *portWriter) Write(b []byte) (int, error) {
	if p.w == nil {
		ctx, cancel := context.WithTimeout(p.ctx, logPortWait)
		path, err := transport.WaitForPort(ctx, transport.SysPortsDir, "/dev", p.name, portPollInterval)
		cancel()
		if err == nil {
			var f *os.File
			if f, err = os.OpenFile(path, os.O_WRONLY, 0); err == nil {
				p.w = f
			}
		}
		if err != nil {
			p.log.Error("no log port; container output is discarded", "port", p.name, "err", err)
			p.w = io.Discard
		}
	}
	return p.w.Write(b)
}
