package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
	"github.com/vk-applevm/vk-applevm/vm/shim"
)

// containerMemory is the memory of the benchmark's container: the
// runtime's default for a container without a size.
const containerMemory = container.DefaultMemoryBytes

// productBench creates busybox containers through container.Runtime: image
// store, root disk, scratch disk, network endpoint, shim, QEMU, agent.
type productBench struct {
	rt       *container.Runtime
	images   *image.Store
	shimArgv []string
	net      network.Network
	reg      *imagetest.Registry
	ref      string
	root     string
	work     string
	keep     bool // copy each VM's console log into work
	log      *slog.Logger
	n        int
}

// newProductBench pushes the busybox test image to a registry on
// loopback, pulls it into a store under work and opens the VM network
// with its node side in a network namespace of its own, so nothing on the
// host's network changes.
func newProductBench(ctx context.Context, o options, bundle guest.Bundle, work string, log *slog.Logger) (_ *productBench, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the product path creates a network namespace and taps: run make bench as root")
	}
	bin, err := filepath.Abs(o.shim)
	if err != nil {
		return nil, fmt.Errorf("find vk-applevm-shim: %w", err)
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("the per-VM shim (build it with `make build`): %w", err)
	}
	guestDir, err := filepath.Abs(o.guestDir)
	if err != nil {
		return nil, fmt.Errorf("find the guest bundle: %w", err)
	}
	p := &productBench{root: filepath.Join(work, "root"), work: work, keep: o.keep, log: log}
	defer func() {
		if err != nil {
			p.close(context.WithoutCancel(ctx))
		}
	}()
	if p.reg, err = imagetest.NewRegistry(); err != nil {
		return nil, err
	}
	img, err := imagetest.BuildBusybox(ctx, imagetest.DefaultCacheDir())
	if err != nil {
		return nil, fmt.Errorf("build the busybox test image: %w", err)
	}
	if p.ref, err = p.reg.PushImage(ctx, "busybox:latest", img); err != nil {
		return nil, fmt.Errorf("push busybox: %w", err)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	images, err := image.Open(p.root, image.WithLogger(quiet))
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	if _, err := images.Pull(ctx, p.ref, image.PullOptions{}); err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.ref, err)
	}
	p.images = images
	p.shimArgv = []string{bin, "--guest", guestDir, "--log-level", "warn"}
	p.net, err = switchnet.Open(ctx, switchnet.Config{StateDir: p.root, Log: quiet})
	if err != nil {
		return nil, fmt.Errorf("open the VM network: %w", err)
	}
	p.rt, err = container.New(container.Config{
		Root: p.root, Images: images, Network: p.net, Guest: bundle, Driver: "qemu",
		ShimArgv: p.shimArgv,
		Logger:   quiet,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// round creates one container, runs the workload, samples memory and
// deletes the container.
func (p *productBench) round(ctx context.Context, settle time.Duration) (s productSample, err error) {
	p.n++
	start := time.Now()
	sb, err := p.rt.Create(ctx, container.VMConfig{
		Name: "bench-" + strconv.Itoa(p.n), ImageRef: p.ref, MemoryBytes: containerMemory,
		LogDir: filepath.Join(p.root, "logs"),
	})
	if err != nil {
		return s, fmt.Errorf("create container: %w", err)
	}
	s.Create = time.Since(start)
	defer func() {
		if p.keep {
			// Delete removes the VM directory; keep its console.
			if data, rerr := os.ReadFile(sb.ConsoleLog()); rerr == nil {
				_ = os.WriteFile(filepath.Join(p.work, fmt.Sprintf("product-%d-console.log", p.n)), data, 0o644)
			}
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		err = errors.Join(err, sb.Delete(dctx))
	}()
	st, err := sb.State(ctx)
	if err != nil {
		return s, fmt.Errorf("container VM state: %w", err)
	}
	if s.CPU, err = processCPU(st.HypervisorPid); err != nil {
		return s, err
	}
	s.HostSetup = st.StartedAt.Sub(start)

	sc, err := shim.Connect(sb.Dir())
	if err != nil {
		return s, fmt.Errorf("connect to the shim: %w", err)
	}
	defer sc.Close()
	ac, err := client.Dial(ctx, sc.DialAgent)
	if err != nil {
		return s, err
	}
	defer ac.Close()
	if s.AgentRSSCreated, err = agentRSS(ctx, ac); err != nil {
		return s, err
	}
	if err := workload(ctx, sb); err != nil {
		return s, err
	}
	if err := sleep(ctx, settle); err != nil {
		return s, err
	}
	if s.AgentRSSWorked, err = agentRSS(ctx, ac); err != nil {
		return s, err
	}
	if s.AgentAnon, s.AgentFile, err = agentRSSParts(ctx, ac); err != nil {
		return s, err
	}
	if s.QEMU, err = processMemory(st.HypervisorPid); err != nil {
		return s, err
	}
	if s.Shim, err = processMemory(st.ShimPid); err != nil {
		return s, err
	}
	return s, nil
}

func agentRSS(ctx context.Context, ac *client.Client) (uint64, error) {
	info, err := ac.Info(ctx, &api.InfoRequest{})
	if err != nil {
		return 0, fmt.Errorf("agent info: %w", err)
	}
	return info.GetAgentRssBytes(), nil
}

// workload (workloadExecs execs, each printing about 110 KiB of seq and a
// directory listing) is what an idle container's agent sees in its first minute: the
// main process, a few execs with output (kubectl exec, probes) and stats
// (the kubelet's summary API).
func workload(ctx context.Context, sb *container.VM) error {
	if _, err := sb.Start(ctx, container.ProcessConfig{ID: "main", Args: []string{"sleep", "86400"}, LogName: "main"}); err != nil {
		return fmt.Errorf("start the main process: %w", err)
	}
	for i := range workloadExecs {
		var out bytes.Buffer
		st, err := sb.Exec(ctx, container.ProcessConfig{
			ID: "exec-" + strconv.Itoa(i), Args: []string{"sh", "-c", "seq 1 20000; ls -l /bin | head -100"},
		}, container.IO{Stdout: &out, Stderr: &out})
		if err != nil {
			return fmt.Errorf("exec %d: %w", i, err)
		}
		if st.Code != 0 || !strings.HasPrefix(out.String(), "1\n2\n") || out.Len() < 100_000 {
			return fmt.Errorf("exec %d: exit %d with %d bytes of output %.80q", i, st.Code, out.Len(), out.String())
		}
		if _, err := sb.Stats(ctx); err != nil {
			return fmt.Errorf("stats: %w", err)
		}
	}
	return nil
}

// agentRSSParts reads the agent's anonymous and file-backed resident
// memory from Info (a container no longer sees the agent's /proc entry).
func agentRSSParts(ctx context.Context, ac *client.Client) (anon, file uint64, err error) {
	info, err := ac.Info(ctx, &api.InfoRequest{})
	if err != nil {
		return 0, 0, fmt.Errorf("agent info: %w", err)
	}
	if info.GetAgentRssAnonBytes() == 0 {
		return 0, 0, fmt.Errorf("the agent reports no anonymous memory (an agent older than its RSS split?)")
	}
	return info.GetAgentRssAnonBytes(), info.GetAgentRssFileBytes(), nil
}

// close deletes what newProductBench made.
func (p *productBench) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if p.net != nil {
		if err := p.net.Teardown(ctx); err != nil {
			p.log.Warn("tear down the VM network", "err", err)
		}
	}
	if p.reg != nil {
		p.reg.Close()
	}
}
