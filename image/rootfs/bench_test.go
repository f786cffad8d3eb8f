package rootfs_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/image/rootfs"
	"github.com/vk-applevm/vk-applevm/image/rootfs/rootfsbench"
)

// The target: converting layers is at least as fast as
// `mkfs.ext4 -d` on the same, already extracted, tree. The tree and the
// comparison live in rootfsbench, which `make bench` uses too.
//
//	go test -run '^$' -bench . -benchtime 10x ./image/rootfs/
//	go test -v -run '^$' ./image/rootfs/ -mkfs-ratio 9   # median of 9 alternating rounds
var mkfsRatioRounds = flag.Int("mkfs-ratio", 0, "print Build's speed against mkfs.ext4 -d over this many alternating rounds")

func TestMain(m *testing.M) {
	flag.Parse()
	if *mkfsRatioRounds > 0 {
		if err := printMkfsRatio(*mkfsRatioRounds); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func benchTree(b *testing.B) rootfsbench.Tree {
	b.Helper()
	t, err := rootfsbench.NewTree(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return t
}

func BenchmarkBuild(b *testing.B) {
	for _, compressed := range []bool{false, true} {
		b.Run(map[bool]string{false: "tar", true: "gzip"}[compressed], func(b *testing.B) {
			t := benchTree(b)
			layers, err := t.V1Layers(compressed)
			if err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			b.SetBytes(t.FileBytes)
			for i := 0; b.Loop(); i++ {
				dst := filepath.Join(dir, fmt.Sprintf("img-%d", i))
				if _, err := rootfs.Build(context.Background(), layers, dst); err != nil {
					b.Fatal(err)
				}
				os.Remove(dst)
			}
		})
	}
}

func BenchmarkMkfsExt4Dir(b *testing.B) {
	c, err := rootfsbench.NewComparison(benchTree(b), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	b.SetBytes(c.Tree.FileBytes)
	for i := 0; b.Loop(); i++ {
		dst := filepath.Join(dir, fmt.Sprintf("img-%d", i))
		if out, err := exec.Command(c.Mkfs, "-q", "-F", "-d", c.Src, dst, c.Tree.MkfsSize()).CombinedOutput(); err != nil {
			b.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
		os.Remove(dst)
	}
}

// BenchmarkBuildVsMkfs alternates Build and mkfs on the same tree and
// reports the median of mkfs's time over Build's (above 1: Build is
// faster), for plain tar and for gzip layers.
func BenchmarkBuildVsMkfs(b *testing.B) {
	c, err := rootfsbench.NewComparison(benchTree(b), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var build, buildGzip, mkfs []time.Duration
	for b.Loop() {
		r, err := c.Round(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		build, buildGzip, mkfs = append(build, r.Build.Wall), append(buildGzip, r.BuildGzip.Wall), append(mkfs, r.Mkfs.Wall)
	}
	b.ReportMetric(ratioOfMedians(mkfs, build), "mkfs/build")
	b.ReportMetric(ratioOfMedians(mkfs, buildGzip), "mkfs/build-gzip")
	b.ReportMetric(float64(median(build).Microseconds())/1000, "build-ms")
	b.ReportMetric(float64(median(buildGzip).Microseconds())/1000, "build-gzip-ms")
	b.ReportMetric(float64(median(mkfs).Microseconds())/1000, "mkfs-ms")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ratioOfMedians(num, den []time.Duration) float64 {
	return float64(median(num)) / float64(median(den))
}

// printMkfsRatio is the -mkfs-ratio flag: alternate rounds, print medians.
func printMkfsRatio(rounds int) error {
	ctx := context.Background()
	t, err := rootfsbench.NewTree(ctx)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "mkfs-ratio")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	c, err := rootfsbench.NewComparison(t, work)
	if err != nil {
		return err
	}
	if _, err := c.Round(ctx); err != nil { // warm the page cache for all three
		return err
	}
	var build, buildGzip, mkfs []time.Duration
	for range rounds {
		r, err := c.Round(ctx)
		if err != nil {
			return err
		}
		build, buildGzip, mkfs = append(build, r.Build.Wall), append(buildGzip, r.BuildGzip.Wall), append(mkfs, r.Mkfs.Wall)
	}
	fmt.Printf("rootfs.Build vs mkfs.ext4 -d, %d alternating rounds, %d layers, %d MiB of file data:\n",
		rounds, len(c.Tar), t.FileBytes>>20)
	fmt.Printf("  mkfs.ext4 -d median %v\n", median(mkfs))
	fmt.Printf("  Build, tar layers:  median %v, %.2fx the speed of mkfs\n", median(build), ratioOfMedians(mkfs, build))
	fmt.Printf("  Build, gzip layers: median %v, %.2fx the speed of mkfs\n", median(buildGzip), ratioOfMedians(mkfs, buildGzip))
	return nil
}
