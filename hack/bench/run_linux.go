package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/bench/results"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// runBaseline is another build of the CLI run in the same rounds (before
// and after a change): a directory holding vk-applevm, vk-applevm-shim and
// guest/<arch>, as a checkout's bin/ after `make build guest`.
var runBaseline = flag.String("run-baseline", "", "bin directory of another build (vk-applevm, vk-applevm-shim, guest/ARCH) whose `run --rm` runs in the same rounds, e.g. /tmp/old/bin")

// runTarget is the bound on `vk-applevm run --rm busybox echo`
// against the floor VM's full cycle.
const runTarget = 1.25

// cliBench runs the CLI the way a user does: its own state root, busybox
// from a registry on loopback (pulled once before the rounds), the shim
// next to the binary, the accelerator the shim chooses (VKAV_ACCEL is not
// passed on).
type cliBench struct {
	bin, root, guestDir, ref string
	// flags go before the command (--vm-templates).
	flags []string
	env   []string
	reg   *imagetest.Registry
}

// runSample is one `run --rm` with the CLI's own breakdown (its debug
// log's phase and VM lines).
type runSample struct {
	Wall time.Duration
	// Steps are the CLI's phases and the runtime's steps inside them, by
	// name ("create: boot", ...).
	Steps map[string]time.Duration
}

// runRun compares `vk-applevm run --rm busybox echo` with the floor VM's
// whole cycle (QEMU start → floorinit says ready → power-off → QEMU gone)
// in the same rounds, with the CLI's process start-up (`vk-applevm
// version`) beside.
func runRunBench(ctx context.Context, o options, work string, log *slog.Logger) section {
	s := section{Title: "run --rm busybox echo (whole CLI) vs the floor VM's full cycle"}
	const name = "run --rm / floor full cycle, wall"
	fail := func(err error) section {
		log.Error("run benchmark", "err", err)
		s.Rows = append(s.Rows, missing(name, fmt.Sprintf("<= %.2fx", runTarget), err.Error()))
		return s
	}
	bundle, err := benchGuest(o, true)
	if err != nil {
		return fail(err)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bb := &bootBench{keep: o.keep, bundle: bundle, driver: qemu.New(qemu.Options{Logger: quiet}), work: work, memoryMiB: o.memoryMiB, log: log}
	cb, err := newCLIBench(ctx, o.binary, o.guestDir, filepath.Join(work, "cli"))
	if err != nil {
		return fail(err)
	}
	defer cb.close(context.WithoutCancel(ctx), log)
	// The same CLI and state root resuming its VMs from a template of
	// their shape (--vm-templates); the warm-up round builds the template.
	tb := *cb
	tb.flags = []string{"--vm-templates"}
	var base *cliBench
	if *runBaseline != "" {
		base, err = newCLIBench(ctx, filepath.Join(*runBaseline, "vk-applevm"), filepath.Join(*runBaseline, "guest", runtime.GOARCH), filepath.Join(work, "cli-baseline"))
		if err != nil {
			return fail(fmt.Errorf("baseline: %w", err))
		}
		defer base.close(context.WithoutCancel(ctx), log)
	}

	var floor, runs, inits, baseRuns, tplRuns []time.Duration
	var samples, baseSamples, tplSamples []runSample
	variants := []variant{
		{"floor cycle", func(ctx context.Context, keep bool) error {
			d, err := bb.floorCycle(ctx)
			if err == nil && keep {
				floor = append(floor, d)
			}
			return err
		}},
		{"run --rm", func(ctx context.Context, keep bool) error {
			rs, err := cb.run(ctx)
			if err == nil && keep {
				runs = append(runs, rs.Wall)
				samples = append(samples, rs)
			}
			return err
		}},
		{"run --rm --vm-templates", func(ctx context.Context, keep bool) error {
			rs, err := tb.run(ctx)
			if err == nil && keep {
				tplRuns = append(tplRuns, rs.Wall)
				tplSamples = append(tplSamples, rs)
			}
			return err
		}},
		{"cli start", func(ctx context.Context, keep bool) error {
			d, err := cb.version(ctx)
			if err == nil && keep {
				inits = append(inits, d)
			}
			return err
		}},
	}
	if base != nil {
		variants = append(variants, variant{"run --rm (baseline)", func(ctx context.Context, keep bool) error {
			rs, err := base.run(ctx)
			if err == nil && keep {
				baseRuns = append(baseRuns, rs.Wall)
				baseSamples = append(baseSamples, rs)
			}
			return err
		}})
	}
	if err := runInterleaved(ctx, log, "run", o.rounds, variants); err != nil {
		return fail(err)
	}
	r := ratio(median(runs), median(floor))
	s.Rows = append(s.Rows,
		info("floor full cycle (QEMU start -> power-off)", fmtDuration(median(floor))+"  "+fmtSeries(floor)),
		info("vk-applevm run --rm busybox echo", fmtDuration(median(runs))+"  "+fmtSeries(runs)),
		measured(results.Figure{
			ID:     "run.echo",
			Figure: "`vk-applevm run --rm busybox echo` against the floor VM's full cycle (QEMU start → floorinit → power-off), interleaved",
			Value:  median(runs).Seconds(), Unit: "s", Reference: &results.Reference{Name: "the floor VM's full cycle", Value: median(floor).Seconds()},
			Ratio: r, Target: results.RatioAtMost(runTarget),
			Detail:  runDetail(runs, floor, inits, samples),
			Command: fmt.Sprintf("go run ./hack/bench -skip boot,product,pod,shim,memory,convert,net,churn -rounds %d", o.rounds),
		}),
		info("  CLI process start and exit (vk-applevm version)", fmtDuration(median(inits))),
	)
	s.Rows = append(s.Rows, stepRows(samples, "  ")...)
	s.Rows = append(s.Rows,
		info("vk-applevm --vm-templates run --rm busybox echo", fmtDuration(median(tplRuns))+"  "+fmtSeries(tplRuns)),
		measured(results.Figure{
			ID:     "run.echo.template",
			Figure: "`vk-applevm --vm-templates run --rm busybox echo` (the VM resumed from a template of its shape, built in the warm-up round) against the floor VM's full cycle, interleaved",
			Value:  median(tplRuns).Seconds(), Unit: "s", Reference: &results.Reference{Name: "the floor VM's full cycle", Value: median(floor).Seconds()},
			Ratio: ratio(median(tplRuns), median(floor)), Target: results.RatioAtMost(runTarget),
			Detail:  runDetail(tplRuns, floor, inits, tplSamples),
			Command: fmt.Sprintf("go run ./hack/bench -skip boot,product,pod,shim,memory,convert,net,churn -rounds %d", o.rounds),
		}),
	)
	s.Rows = append(s.Rows, stepRows(tplSamples, "  templates ")...)
	if base != nil {
		br := ratio(median(baseRuns), median(floor))
		s.Rows = append(s.Rows,
			info("baseline ("+*runBaseline+") run --rm", fmtDuration(median(baseRuns))+"  "+fmtSeries(baseRuns)),
			info("baseline run --rm / floor full cycle", fmt.Sprintf("%.3fx (paired median %.3fx)", br, median(pairedRatios(baseRuns, floor)))),
			info("this build / baseline", fmt.Sprintf("%.3fx (paired median %.3fx)", ratio(median(runs), median(baseRuns)), median(pairedRatios(runs, baseRuns)))),
		)
		s.Rows = append(s.Rows, stepRows(baseSamples, "  baseline ")...)
	}
	return s
}

// runDetail says, for the record, how run.echo was measured and where its
// time went (the CLI's step medians).
func runDetail(runs, floor, inits []time.Duration, samples []runSample) string {
	var steps []string
	for _, r := range stepRows(samples, "") {
		steps = append(steps, r.Name+" "+r.Value)
	}
	return fmt.Sprintf("paired median %.3f×; %d interleaved rounds, medians. Wall %s, floor %s; CLI process start and exit %s. The CLI's steps (--log-level debug): %s",
		median(pairedRatios(runs, floor)), len(runs), fmtDuration(median(runs)), fmtDuration(median(floor)), fmtDuration(median(inits)), strings.Join(steps, ", "))
}

// stepRows are the medians of the CLI's steps (a build without the
// phase log has none).
func stepRows(samples []runSample, prefix string) []row {
	var rows []row
	for _, step := range stepNames(samples) {
		var ds []time.Duration
		for _, rs := range samples {
			if d, ok := rs.Steps[step]; ok {
				ds = append(ds, d)
			}
		}
		rows = append(rows, info(prefix+step, fmtDuration(median(ds))))
	}
	return rows
}

func newCLIBench(ctx context.Context, binary, guest, dir string) (_ *cliBench, err error) {
	bin, err := filepath.Abs(binary)
	if err != nil {
		return nil, err
	}
	guestDir, err := filepath.Abs(guest)
	if err != nil {
		return nil, err
	}
	cb := &cliBench{bin: bin, root: filepath.Join(dir, "root"), guestDir: guestDir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, qemu.AccelEnv+"=") {
			cb.env = append(cb.env, kv)
		}
	}
	if cb.reg, err = imagetest.NewRegistry(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			cb.reg.Close()
		}
	}()
	img, err := imagetest.BuildBusybox(ctx, imagetest.DefaultCacheDir())
	if err != nil {
		return nil, fmt.Errorf("build the busybox test image: %w", err)
	}
	if cb.ref, err = cb.reg.PushImage(ctx, "busybox:latest", img); err != nil {
		return nil, fmt.Errorf("push busybox: %w", err)
	}
	if _, err := cb.cli(ctx, "images", "pull", cb.ref); err != nil {
		return nil, err
	}
	return cb, nil
}

func (cb *cliBench) cli(ctx context.Context, args ...string) (stderr []byte, err error) {
	cmd := exec.CommandContext(ctx, cb.bin, append([]string{"--root", cb.root, "--guest", cb.guestDir}, args...)...)
	cmd.Env = cb.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("vk-applevm %s: %w: %s%s", strings.Join(args, " "), err, out.Bytes(), errOut.Bytes())
	}
	return errOut.Bytes(), nil
}

// run times one `run --rm REF echo hello` and reads its breakdown.
func (cb *cliBench) run(ctx context.Context) (runSample, error) {
	args := append([]string{"--root", cb.root, "--guest", cb.guestDir, "--log-level", "debug"}, cb.flags...)
	cmd := exec.CommandContext(ctx, cb.bin, append(args, "run", "--rm", cb.ref, "echo", "hello")...)
	cmd.Env = cb.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	s := runSample{Wall: time.Since(start)}
	if err != nil || out.String() != "hello\n" {
		return s, fmt.Errorf("run --rm: %v, output %q: %s", err, out.String(), errOut.Bytes())
	}
	s.Steps = parseSteps(errOut.Bytes())
	if total, ok := s.Steps["total (in main)"]; ok {
		s.Steps["process start, runtime close, exit"] = s.Wall - total
	}
	return s, nil
}

// version times a command that does nothing: the CLI binary's start-up
// (package initialisation of every linked package) and exit.
func (cb *cliBench) version(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if _, err := cb.cli(ctx, "version"); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// parseSteps reads the CLI's debug log: "phase" lines (cmd/vk-applevm
// phaseClock) and the runtime's "VM created" and "VM deleted" lines with
// their step durations.
func parseSteps(log []byte) map[string]time.Duration {
	steps := map[string]time.Duration{}
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := logFields(sc.Text())
		switch f["msg"] {
		case "phase":
			if d, err := time.ParseDuration(f["took"]); err == nil {
				steps[f["phase"]] = d
			}
			if d, err := time.ParseDuration(f["total"]); err == nil {
				steps["total (in main)"] = d
			}
		case "VM created":
			for _, k := range []string{"host", "boot", "setup"} {
				if d, err := time.ParseDuration(f[k]); err == nil {
					steps["create: "+k] = d
				}
			}
		case "VM deleted":
			for _, k := range []string{"shim", "network", "files"} {
				if d, err := time.ParseDuration(f[k]); err == nil {
					steps["remove: "+k] = d
				}
			}
		}
	}
	return steps
}

// logFields splits a slog text line into its keys and values (values
// quoted when they hold spaces).
func logFields(line string) map[string]string {
	out := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for end < len(rest) && (rest[end] != '"' || rest[end-1] == '\\') {
				end++
			}
			v = strings.ReplaceAll(rest[1:min(end, len(rest))], `\"`, `"`)
			rest = rest[min(end+1, len(rest)):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		out[k] = v
		line = rest
	}
	return out
}

// stepNames lists the steps seen in any sample, in a stable order.
func stepNames(samples []runSample) []string {
	seen := map[string]bool{}
	var names []string
	for _, s := range samples {
		for k := range s.Steps {
			if !seen[k] {
				seen[k] = true
				names = append(names, k)
			}
		}
	}
	sort.Strings(names)
	return names
}

// close stops the switch the CLI started and removes nothing else (the
// work directory goes with the run).
func (cb *cliBench) close(ctx context.Context, log *slog.Logger) {
	defer cb.reg.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := switchnet.Open(ctx, switchnet.Config{StateDir: cb.root, Log: quiet})
	if err == nil {
		err = n.Teardown(ctx)
	}
	if err != nil {
		log.Warn("stop the CLI's switch", "err", err)
	}
}

// floorCycle boots the floor and waits for QEMU to be gone after the
// guest's power-off: the least a VM that runs one trivial thing can take.
func (b *bootBench) floorCycle(ctx context.Context) (time.Duration, error) {
	dir, err := os.MkdirTemp(b.work, "floor-cycle-")
	if err != nil {
		return 0, fmt.Errorf("floor cycle: %w", err)
	}
	defer b.removeDir(dir)
	spec := b.spec(b.bundle.FloorInitrd, dir)
	start := time.Now()
	m, err := b.driver.Start(ctx, spec, filepath.Join(dir, "qemu"))
	if err != nil {
		return 0, fmt.Errorf("start floor VM: %w", err)
	}
	defer stopMachine(m, b.log)
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		return 0, fmt.Errorf("floor VM: %w", err)
	}
	defer port.Close()
	if line, err := readLine(ctx, port); err != nil || line != "ready\n" {
		return 0, fmt.Errorf("floor VM said %q on the agent port (%v)%s", line, err, consoleTail(spec.ConsoleLog))
	}
	select {
	case <-m.Done():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(time.Minute):
		return 0, errors.New("the floor VM did not power off within a minute")
	}
	return time.Since(start), nil
}
