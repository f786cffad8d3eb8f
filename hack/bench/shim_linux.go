package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/hack/bench/results"
)

// shimRSSTarget is the bound on the shim's resident memory per VM.
const shimRSSTarget = 12 << 20

// shimVariant is one way to run the per-VM shim: the binary of its own, or
// the node binary run as `vk-applevm shim`, what every VM ran before.
type shimVariant struct {
	name    string
	binary  string // the executable, for its size
	rt      *container.Runtime
	samples []memory
}

// runShim measures the shim's memory per VM for an idle busybox container
// (main process sleeping, the runtime's agent connection open, settled for
// memorySettle): vk-applevm-shim against the node binary as the shim, in
// the same rounds, alternating which goes first.
func runShim(ctx context.Context, o options, work string, log *slog.Logger) section {
	s := section{Title: "shim memory per VM (idle busybox container)"}
	fail := func(err error) section {
		log.Error("shim benchmark", "err", err)
		s.Rows = append(s.Rows, missing("vk-applevm-shim RSS", "<= 12 MiB", err.Error()))
		return s
	}
	bundle, err := benchGuest(o, false)
	if err != nil {
		return fail(err)
	}
	p, err := newProductBench(ctx, o, bundle, filepath.Join(work, "shim"), log)
	if err != nil {
		return fail(err)
	}
	defer p.close(context.WithoutCancel(ctx))
	node, err := filepath.Abs(o.binary)
	if err != nil {
		return fail(err)
	}
	guestDir, err := filepath.Abs(o.guestDir)
	if err != nil {
		return fail(err)
	}
	// Same network and image store; a state root of its own.
	old, err := container.New(container.Config{
		Root: filepath.Join(work, "shim-node"), Images: p.images, Network: p.net, Guest: bundle, Driver: "qemu",
		ShimArgv: []string{node, "--guest", guestDir, "--log-level", "warn", "shim"}, Logger: quietLog(),
	})
	if err != nil {
		return fail(err)
	}
	variants := []*shimVariant{
		{name: "vk-applevm-shim", binary: p.shimArgv[0], rt: p.rt},
		{name: "vk-applevm shim (node binary)", binary: node, rt: old},
	}
	for round := 0; round <= o.shimRounds && ctx.Err() == nil; round++ {
		for _, i := range roundOrder(len(variants), round) {
			v := variants[i]
			m, err := idleShimMemory(ctx, v.rt, p.ref, filepath.Join(work, "shim-logs"), round)
			if err != nil {
				return fail(fmt.Errorf("%s, round %d: %w", v.name, round, err))
			}
			log.Debug("shim memory", "variant", v.name, "round", round, "rss", fmtMiB(m.RSS), "pss", fmtMiB(m.PSS))
			if round > 0 { // round 0 warms the page cache and the image's root filesystem
				v.samples = append(v.samples, m)
			}
		}
		log.Info("shim round done", "round", round, "warm-up", round == 0, "load", loadAverage())
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	return shimSection(s, variants)
}

func shimSection(s section, variants []*shimVariant) section {
	med := make([]memory, len(variants))
	for i, v := range variants {
		med[i] = medianMemory(v.samples)
		size := "?"
		if info, err := os.Stat(v.binary); err == nil {
			size = fmtMiB(uint64(info.Size()))
		}
		s.Rows = append(s.Rows, info(fmt.Sprintf("%s: RSS / PSS (binary %s, %d VMs)", v.name, size, len(v.samples)), fmtMemory(med[i])))
	}
	s.Rows = append(s.Rows,
		measured(results.Figure{ID: "shim.rss", Figure: "the shim's memory per idle busybox VM, RSS",
			Value: mib(med[0].RSS), Unit: "MiB", Reference: &results.Reference{Name: variants[1].name, Value: mib(med[1].RSS)},
			Ratio: ratio(med[0].RSS, med[1].RSS), Target: results.AtMost(mib(shimRSSTarget)),
			Detail:  fmt.Sprintf("PSS %s against %s; %d VMs", fmtMiB(med[0].PSS), fmtMiB(med[1].PSS), len(variants[0].samples)),
			Command: "go run ./hack/bench -skip boot,product,run,pod,memory,convert,net,churn"}),
		info("vk-applevm-shim / node binary as shim (RSS)", fmt.Sprintf("%.2fx", ratio(med[0].RSS, med[1].RSS))),
	)
	return s
}

// idleShimMemory creates a busybox container whose main process sleeps,
// lets it settle, reads its shim's memory and deletes it.
func idleShimMemory(ctx context.Context, rt *container.Runtime, ref, logDir string, round int) (_ memory, err error) {
	sb, err := rt.Create(ctx, container.VMConfig{
		Name: "shim-" + strconv.Itoa(round), ImageRef: ref, MemoryBytes: containerMemory, LogDir: logDir,
	})
	if err != nil {
		return memory{}, fmt.Errorf("create container: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		err = errors.Join(err, sb.Delete(dctx))
	}()
	if _, err := sb.Start(ctx, container.ProcessConfig{ID: "main", Args: []string{"sleep", "86400"}, LogName: "main"}); err != nil {
		return memory{}, fmt.Errorf("start the main process: %w", err)
	}
	if err := sleep(ctx, memorySettle); err != nil {
		return memory{}, err
	}
	st, err := sb.State(ctx)
	if err != nil {
		return memory{}, fmt.Errorf("container VM state: %w", err)
	}
	return processMemory(st.ShimPid)
}
