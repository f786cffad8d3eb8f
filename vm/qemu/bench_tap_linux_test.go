package qemu

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/vm"
)

// BenchmarkTapThroughput compares guest→host TCP throughput over a tap with
// and without IFF_VNET_HDR (checksum and segmentation offload between the
// guest's virtio-net and the host), variants in turn per round:
//
//	go test -run '^$' -bench TapThroughput -benchtime 3x ./vm/qemu/
func BenchmarkTapThroughput(b *testing.B) {
	bundle := floorBundle(b)
	ns := testNetns(b)
	run(b, "ip", "-n", ns, "tuntap", "add", "dev", "vkavtap0", "mode", "tap")
	run(b, "ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", "vkavtap0")
	run(b, "ip", "-n", ns, "link", "set", "vkavtap0", "up")
	ln := listenInNetns(b, "/run/netns/"+ns, "10.77.0.1:5001")
	defer ln.Close()

	const mib = 64
	variants := []struct {
		name      string
		noVnetHdr bool
	}{{"vnet_hdr", false}, {"no_vnet_hdr", true}}
	rates := make([][]float64, len(variants))
	for b.Loop() {
		for i, v := range variants {
			d := New(Options{NoVnetHdr: v.noVnetHdr, Logger: testLogger})
			spec := floorSpec(b, bundle, "net")
			spec.Cmdline = fmt.Sprintf("vkavfloor=net vkavnet=10.77.0.2/24,10.77.0.1:5001,%d", mib)
			spec.MemoryMiB = 512
			spec.NICs = []vm.NIC{{MAC: "02:76:6b:61:76:02", Attachment: vm.Attachment{
				Kind: vm.AttachTap, Tap: "vkavtap0", Netns: "/run/netns/" + ns}}}
			ctx, cancel := context.WithTimeout(context.Background(), 3*bootTimeout)
			m, err := d.Start(ctx, spec, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			// The guest's "ready" blocks until the host side of the port
			// is connected; drain the port meanwhile.
			port, err := m.Port(ctx, vm.AgentPort)
			if err != nil {
				b.Fatal(err)
			}
			go io.Copy(io.Discard, port)
			conn, err := acceptCtx(ctx, ln)
			if err != nil {
				console, _ := os.ReadFile(spec.ConsoleLog)
				b.Fatalf("%s: no connection from the guest: %v\n%s", v.name, err, console)
			}
			r := bufio.NewReaderSize(conn, 1<<20)
			if _, err := r.Peek(1); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			n, err := io.Copy(io.Discard, r)
			elapsed := time.Since(start)
			conn.Close()
			if err != nil || n != mib<<20 {
				b.Fatalf("%s: received %d bytes (%v), want %d", v.name, n, err, mib<<20)
			}
			rates[i] = append(rates[i], float64(n)/elapsed.Seconds()/1e6)
			select {
			case <-m.Done():
			case <-ctx.Done():
				b.Fatalf("%s: guest did not power off", v.name)
			}
			port.Close()
			cancel()
		}
	}
	base := medianFloat(rates[0])
	for i, v := range variants {
		med := medianFloat(rates[i])
		b.ReportMetric(med, v.name+"-MB/s")
		b.ReportMetric(med/base, v.name+"/vnet_hdr")
		b.Logf("%-12s median %.1f MB/s of %v", v.name, med, rates[i])
	}
}

func medianFloat(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// listenInNetns opens a TCP listener inside the namespace at nsPath; a
// socket stays in the namespace it was created in.
func listenInNetns(tb testing.TB, nsPath, addr string) net.Listener {
	tb.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread may be left in the namespace
		ns, err := os.Open(nsPath)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, err}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- result{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		tb.Fatalf("listen on %s in %s: %v", addr, nsPath, r.err)
	}
	return r.ln
}

func acceptCtx(ctx context.Context, ln net.Listener) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		ln.(*net.TCPListener).SetDeadline(dl)
	}
	return ln.Accept()
}
