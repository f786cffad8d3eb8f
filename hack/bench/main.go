//go:build linux

// Command bench is `make bench`: the benchmarks of the issue, side by
// side in one run, each printed as a ratio against its reference:
//
//   - VM boot to agent-ready against the same kernel booting a trivial init
//     (hack/floorinit, "the floor"), through vm/qemu directly, and the whole
//     product path (container.Runtime.Create) next to it;
//   - image → ext4 conversion (rootfs.Build) against `mkfs.ext4 -d` on the
//     same tree;
//   - the guest agent's resident memory at ready and after a workload;
//   - host memory per VM (QEMU and the shim, RSS and PSS);
//   - the shim's memory per idle VM: vk-applevm-shim against the node
//     binary run as the shim, as every VM ran it before;
//   - the pod network's TCP throughput through the user-space switch, next
//     to a kernel bridge with taps and a guest's own loopback.
//
// Variants run interleaved (A B C, B C A, ...) so the load of a noisy host
// hits them alike; medians are reported, with QEMU's CPU time next to wall
// time (CPU time is much less disturbed by other load). The table at the
// end holds every figure, its target and a verdict; the exit status is 0
// either way: a benchmark reports, it does not gate. `make bench` runs it
// after building the binaries and the guest bundle (BENCH_FLAGS passes
// flags).
//
//	go run ./hack/bench [-rounds 9] [-guest bin/guest/amd64] [-vk-applevm bin/vk-applevm] [-shim bin/vk-applevm-shim]
//	go run ./hack/bench -skip boot,product,convert,net   # the shim's memory only
//	go run ./hack/bench -skip product,convert -compare old=/tmp/old-initrd.img   # another agent build, same rounds
//	go run ./hack/bench -keep -v   # keep the console logs, log every sample
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	rounds   int
	guestDir string
	binary   string
	shim     string
	// shimRounds is the number of measured rounds of the shim benchmark.
	shimRounds int
	memoryMiB  uint64
	skip       map[string]bool
	verbose    bool
	keep       bool
	// cmdline is added to the kernel command line of the boot benchmark.
	cmdline string
	// compare lists other agent initrds booted in the same rounds.
	compare []comparedInitrd

	memoryRounds int // rounds of the memory benchmark (memory_linux.go)
	// tcgBuffer also boots the floor and the agent with QEMU's own TCG
	// code buffer size in the boot benchmark (vm/qemu caps it).
	tcgBuffer bool
}

// comparedInitrd is another build of the agent's initrd (-compare).
type comparedInitrd struct{ name, initrd string }

func main() {
	var o options
	var skip string
	flag.IntVar(&o.rounds, "rounds", 15, "measured rounds per benchmark (after one warm-up round); boots vary by ±10 % on a loaded 2-core machine, so the medians need many")
	flag.StringVar(&o.guestDir, "guest", filepath.Join("bin", "guest", runtime.GOARCH), "guest bundle directory (make guest)")
	flag.StringVar(&o.binary, "vk-applevm", filepath.Join("bin", "vk-applevm"), "vk-applevm binary: the shim benchmark's reference, run as `vk-applevm shim` (make build)")
	flag.StringVar(&o.shim, "shim", filepath.Join("bin", "vk-applevm-shim"), "the per-VM shim binary (make build)")
	flag.IntVar(&o.shimRounds, "shim-rounds", 5, "measured rounds of the shim benchmark (one VM per variant and round); a shim's memory varies much less than boot times")
	flag.IntVar(&o.memoryRounds, "memory-rounds", 3, "rounds of the memory benchmark")
	flag.BoolVar(&o.tcgBuffer, "compare-tcg-buffer", false, "boot benchmark: also boot the floor and the agent with QEMU's default TCG code buffer (vm/qemu caps it)")
	flag.Uint64Var(&o.memoryMiB, "memory", 640, "guest memory in MiB: a container's default 512 MiB plus the runtime's 128 MiB overhead")
	flag.StringVar(&skip, "skip", "", "comma-separated benchmarks to leave out: boot, restore (the resumed agent in the boot rounds), product, run, pod, shim, memory, convert, net, churn")
	flag.BoolVar(&o.verbose, "v", false, "log every sample")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (console logs of the last boots)")
	flag.StringVar(&o.cmdline, "cmdline", "", "more kernel command line for every boot of the boot benchmark, e.g. GODEBUG=inittrace=1 with -keep to read Go's package init times in the console logs")
	var compare string
	flag.StringVar(&compare, "compare", "", "NAME=INITRD,...: also boot these agent initrds in every round (with the bundle's kernel) and compare them with the floor")
	flag.Parse()
	o.skip = parseSkip(skip)
	for _, c := range splitComma(compare) {
		name, initrd, ok := strings.Cut(c, "=")
		if !ok || name == "" || initrd == "" {
			fmt.Fprintf(os.Stderr, "bench: -compare %q: want NAME=INITRD\n", c)
			os.Exit(2)
		}
		o.compare = append(o.compare, comparedInitrd{name, initrd})
	}

	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	if o.rounds < 1 {
		return fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	work, err := os.MkdirTemp("", "vkav-bench-")
	if err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	if o.keep {
		log.Info("keeping the work directory", "dir", work)
	} else {
		defer os.RemoveAll(work)
	}

	began := time.Now()
	loadBefore := loadAverage()
	var sections []section
	if !o.skip["boot"] || !o.skip["product"] {
		sections = append(sections, runBoot(ctx, o, work, log)...)
	}
	if !o.skip["run"] && ctx.Err() == nil {
		sections = append(sections, runRunBench(ctx, o, work, log))
	}
	if !o.skip["pod"] && ctx.Err() == nil {
		sections = append(sections, runPodBench(ctx, o, work, log))
	}
	if !o.skip["shim"] && ctx.Err() == nil {
		sections = append(sections, runShim(ctx, o, work, log))
	}
	if !o.skip["memory"] && ctx.Err() == nil {
		sections = append(sections, runMemory(ctx, o, work, log))
	}
	if !o.skip["convert"] && ctx.Err() == nil {
		sections = append(sections, runConvert(ctx, o, work, log))
	}
	if !o.skip["net"] && ctx.Err() == nil {
		sections = append(sections, runNet(ctx, o, work, log))
	}
	if !o.skip["churn"] && ctx.Err() == nil {
		sections = append(sections, runChurn(ctx, o, work, log))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}

	fmt.Printf("\nvk-applevm benchmarks: %d rounds after a warm-up, medians; %s, %d CPUs; took %s\n",
		o.rounds, runtime.GOARCH, runtime.NumCPU(), time.Since(began).Round(time.Second))
	fmt.Printf("load average (1/5/15 min): %s at the start, %s at the end\n\n", loadBefore, loadAverage())
	passed, failed := printTable(os.Stdout, sections)
	fmt.Printf("\n%d targets met, %d missed (a benchmark reports; the exit status is 0 either way)\n", passed, failed)
	if n, err := recordResults(*resultsPath, sections); err != nil {
		return fmt.Errorf("record the figures: %w", err)
	} else if n > 0 {
		fmt.Printf("%d figures recorded in %s (go run ./hack/bench/readme puts them in the README)\n", n, *resultsPath)
	}
	return nil
}

func parseSkip(s string) map[string]bool {
	out := map[string]bool{}
	for _, name := range splitComma(s) {
		out[name] = true
	}
	return out
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
