package rootfs

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/vk-applevm/vk-applevm/image/ext4/ext4test"
)

// The target: converting layers is at least as fast as
// `mkfs.ext4 -d` on the same, already extracted, tree.
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

// benchTree is a busybox base layer, a layer of 3000 small files in 60
// directories, a layer of larger files (about 24 MiB), and a layer that
// deletes, replaces and hard-links some of them.
type benchTree struct {
	layers [][]ent
	bytes  int64
}

func makeBenchTree(tb testing.TB) benchTree {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	// Half random, half repeated text: compresses like real binaries.
	content := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			if i%64 < 32 {
				b[i] = byte(rng.Uint32())
			} else {
				b[i] = "abcdefghijklmnopqrstuvwxyz012345"[i%32]
			}
		}
		return string(b)
	}
	var t benchTree
	base, _, _ := busyboxLayerEntries(tb)
	t.layers = append(t.layers, base)

	small := []ent{dir("usr"), dir("usr/share")}
	for d := range 60 {
		dn := fmt.Sprintf("usr/share/pkg%02d", d)
		small = append(small, dir(dn))
		for f := range 50 {
			small = append(small, file(fmt.Sprintf("%s/file%02d.txt", dn, f), content(100+rng.IntN(8000))))
		}
	}
	t.layers = append(t.layers, small)

	large := []ent{dir("opt"), dir("opt/app")}
	for i := range 24 {
		large = append(large, file(fmt.Sprintf("opt/app/lib%02d.so", i), content(256<<10+rng.IntN(1536<<10))))
	}
	t.layers = append(t.layers, large)

	top := []ent{whiteout("usr/share/pkg03"), opaque("usr/share/pkg04"), file("usr/share/pkg04/new", "new")}
	for i := range 100 {
		top = append(top, file(fmt.Sprintf("usr/share/pkg%02d/file%02d.txt", 10+i%40, i%50), content(500)))
	}
	for i := range 50 {
		top = append(top, hardlink(fmt.Sprintf("opt/app/alias%02d", i), fmt.Sprintf("opt/app/lib%02d.so", i%24)))
	}
	t.layers = append(t.layers, top)
	for _, l := range t.layers {
		for _, e := range l {
			t.bytes += int64(len(e.data))
		}
	}
	return t
}

// layers returns the tree's layers as gzip blobs (as pulled images hold
// them) or as plain tars.
func (bt benchTree) v1Layers(tb testing.TB, compressed bool) []v1.Layer {
	var ls []v1.Layer
	for _, ents := range bt.layers {
		blob := tarBytes(tb, ents...)
		if compressed {
			blob = gzipBytes(tb, blob)
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(blob)), nil
		})
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
	}
	return ls
}

// extract writes the flattened tree to dir for mkfs.ext4 -d, using the
// image Build made (read back with debugfs rdump) so both sides hold
// exactly the same files.
func (bt benchTree) extract(tb testing.TB, dir string) {
	tb.Helper()
	img := filepath.Join(tb.TempDir(), "ref.ext4")
	if _, err := Build(context.Background(), bt.v1Layers(tb, false), img); err != nil {
		tb.Fatal(err)
	}
	ext4test.Debugfs(tb, img, []string{"rdump / " + dir})
	os.RemoveAll(filepath.Join(dir, "lost+found"))
}

func mkfsSize(bt benchTree) string {
	return strconv.FormatInt((bt.bytes*3/2+64<<20)>>20, 10) + "M"
}

func BenchmarkBuild(b *testing.B) {
	for _, compressed := range []bool{false, true} {
		b.Run(map[bool]string{false: "tar", true: "gzip"}[compressed], func(b *testing.B) {
			bt := makeBenchTree(b)
			layers := bt.v1Layers(b, compressed)
			dir := b.TempDir()
			b.SetBytes(bt.bytes)
			for i := 0; b.Loop(); i++ {
				dst := filepath.Join(dir, fmt.Sprintf("img-%d", i))
				if _, err := Build(context.Background(), layers, dst); err != nil {
					b.Fatal(err)
				}
				os.Remove(dst)
			}
		})
	}
}

func BenchmarkMkfsExt4Dir(b *testing.B) {
	bt := makeBenchTree(b)
	src := b.TempDir()
	bt.extract(b, src)
	mkfs := ext4test.Tool(b, "mkfs.ext4")
	dir := b.TempDir()
	b.SetBytes(bt.bytes)
	for i := 0; b.Loop(); i++ {
		dst := filepath.Join(dir, fmt.Sprintf("img-%d", i))
		if out, err := exec.Command(mkfs, "-q", "-F", "-d", src, dst, mkfsSize(bt)).CombinedOutput(); err != nil {
			b.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
		os.Remove(dst)
	}
}

// BenchmarkBuildVsMkfs alternates Build and mkfs on the same tree and
// reports the median of mkfs's time over Build's (above 1: Build is
// faster), for plain tar and for gzip layers.
func BenchmarkBuildVsMkfs(b *testing.B) {
	var build, buildGzip, mkfs []time.Duration
	cmp := newComparison(b)
	for b.Loop() {
		bt, gt, mt := cmp.round(b)
		build, buildGzip, mkfs = append(build, bt), append(buildGzip, gt), append(mkfs, mt)
	}
	b.ReportMetric(ratioOfMedians(mkfs, build), "mkfs/build")
	b.ReportMetric(ratioOfMedians(mkfs, buildGzip), "mkfs/build-gzip")
	b.ReportMetric(float64(median(build).Microseconds())/1000, "build-ms")
	b.ReportMetric(float64(median(buildGzip).Microseconds())/1000, "build-gzip-ms")
	b.ReportMetric(float64(median(mkfs).Microseconds())/1000, "mkfs-ms")
}

type comparison struct {
	bt        benchTree
	tar, gzip []v1.Layer // the same tree as plain tar and gzip layers
	src, dir  string
	mkfs      string
	n         int
}

func newComparison(tb testing.TB) *comparison {
	c := &comparison{bt: makeBenchTree(tb), src: tb.TempDir(), dir: tb.TempDir(), mkfs: ext4test.Tool(tb, "mkfs.ext4")}
	c.tar, c.gzip = c.bt.v1Layers(tb, false), c.bt.v1Layers(tb, true)
	c.bt.extract(tb, c.src)
	return c
}

// round times Build from plain tar layers (the same bytes mkfs reads),
// Build from gzip layers (what a pulled image holds) and mkfs.ext4 -d, back
// to back.
func (c *comparison) round(tb testing.TB) (build, buildGzip, mkfs time.Duration) {
	c.n++
	for _, run := range []struct {
		layers []v1.Layer
		took   *time.Duration
	}{{c.tar, &build}, {c.gzip, &buildGzip}} {
		dst := filepath.Join(c.dir, fmt.Sprintf("build-%d", c.n))
		start := time.Now()
		if _, err := Build(context.Background(), run.layers, dst); err != nil {
			tb.Fatal(err)
		}
		*run.took = time.Since(start)
		os.Remove(dst)
	}
	dst := filepath.Join(c.dir, fmt.Sprintf("mkfs-%d", c.n))
	start := time.Now()
	if out, err := exec.Command(c.mkfs, "-q", "-F", "-d", c.src, dst, mkfsSize(c.bt)).CombinedOutput(); err != nil {
		tb.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	mkfs = time.Since(start)
	os.Remove(dst)
	return build, buildGzip, mkfs
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
func printMkfsRatio(rounds int) (err error) {
	tb := &cliTB{}
	defer func() {
		for _, d := range tb.dirs {
			os.RemoveAll(d)
		}
		if r := recover(); r != nil {
			err = fmt.Errorf("mkfs ratio: %v", r)
		}
	}()
	c := newComparison(tb)
	c.round(tb) // warm the page cache for all three
	var build, buildGzip, mkfs []time.Duration
	for range rounds {
		bt, gt, mt := c.round(tb)
		build, buildGzip, mkfs = append(build, bt), append(buildGzip, gt), append(mkfs, mt)
	}
	fmt.Printf("rootfs.Build vs mkfs.ext4 -d, %d alternating rounds, %d layers, %d MiB of file data:\n",
		rounds, len(c.tar), c.bt.bytes>>20)
	fmt.Printf("  mkfs.ext4 -d median %v\n", median(mkfs))
	fmt.Printf("  Build, tar layers:  median %v, %.2fx the speed of mkfs\n", median(build), ratioOfMedians(mkfs, build))
	fmt.Printf("  Build, gzip layers: median %v, %.2fx the speed of mkfs\n", median(buildGzip), ratioOfMedians(mkfs, buildGzip))
	return nil
}

// cliTB lets the test helpers run outside a test, for -mkfs-ratio.
type cliTB struct {
	testing.TB
	dirs []string
}

func (c *cliTB) Helper()                   {}
func (c *cliTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (c *cliTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (c *cliTB) TempDir() string {
	d, err := os.MkdirTemp("", "mkfs-ratio")
	if err != nil {
		panic(err)
	}
	c.dirs = append(c.dirs, d)
	return d
}
