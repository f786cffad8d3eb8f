package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/hack/bench/results"
	"github.com/vk-applevm/vk-applevm/network"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
	"github.com/vk-applevm/vk-applevm/network/vswitch"
)

// The pod network's TCP throughput through the user-space switch, next to
// a guest's own loopback (the ceiling a guest's TCP stack reaches under
// this accelerator), in the same rounds:
//
//   - VM→VM: a VM downloads a file from another VM's httpd (pod to pod);
//   - host→VM: a VM downloads from a server on the host (pod to the outside,
//     through the gateway's outbound dial);
//   - VM→host: the host downloads from a VM (a published port).
//
// Until commit df5e3f3 this also measured the Linux kernel bridge with taps
// the switch replaced, in the same rounds (the switch reached 0.60× its
// VM→VM throughput; README, Measured); that code is gone with the bridge.
//
// Transfers are timed inside the guest (wget between two reads of
// /proc/uptime) for VM-side clients and on the host for the host client.

// netTransferBytes is one transfer: long enough that process start and TCP
// slow start are a small part of it under TCG.
const netTransferBytes = 32 << 20

// netPair is two VMs on one network, the first serving a file over HTTP.
type netPair struct {
	name       string
	rt         *container.Runtime
	net        network.Network
	server     *container.VM
	client     *container.VM
	serverAddr string
	// fromHost fetches url on the host side of this network.
	fromHost func(ctx context.Context, url string) (time.Duration, error)
	// hostServer is the base URL of a server on the host side that VMs
	// reach, streaming netTransferBytes.
	hostServer string
	// published is the host address where the server VM's port 80 is
	// reached from the host.
	published string
	closers   []func()
}

type netBench struct {
	pairs []*netPair
	p     *productBench // the image store and registry
	log   *slog.Logger
}

// newNetBench starts a pair of VMs on the switch.
func newNetBench(ctx context.Context, o options, bundle guest.Bundle, work string, log *slog.Logger) (_ *netBench, err error) {
	b := &netBench{log: log}
	defer func() {
		if err != nil {
			b.close(context.WithoutCancel(ctx))
		}
	}()
	p, err := newProductBench(ctx, o, bundle, filepath.Join(work, "net-images"), log)
	if err != nil {
		return nil, err
	}
	b.p = p
	b.pairs = []*netPair{nil}
	images, ref, shimArgv := p.images, p.ref, p.shimArgv

	// The switch, as a node runs it (here in this process), with the
	// host's loopback open to pods so a VM reaches the host's server.
	swRoot := filepath.Join(work, "net-switch")
	sw, err := switchnet.Open(ctx, switchnet.Config{StateDir: swRoot, AllowHostLoopback: true, Log: quietLog()})
	if err != nil {
		return nil, err
	}
	sp := &netPair{name: "switch", net: sw}
	b.pairs[0] = sp
	if sp.rt, err = container.New(container.Config{Root: swRoot, Images: images, Network: sw, Guest: bundle, Driver: "qemu", ShimArgv: shimArgv, Logger: quietLog()}); err != nil {
		return nil, err
	}
	srv, err := serveZeros("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sp.closers = append(sp.closers, func() { srv.Close() })
	port := srv.Addr().(*net.TCPAddr).Port
	sp.hostServer = "http://" + net.JoinHostPort(sw.Gateway().String(), strconv.Itoa(port))
	sp.fromHost = hostGet()

	for _, pr := range b.pairs {
		if err := pr.start(ctx, ref); err != nil {
			return nil, fmt.Errorf("%s: %w", pr.name, err)
		}
	}
	// Publish the switch pair's server on the host's loopback, as a
	// hostPort does.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hp := uint16(free.Addr().(*net.TCPAddr).Port)
	free.Close()
	if err := sw.SetHostPorts(ctx, "bench", []vswitch.HostPort{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hp, Protocol: "TCP", PodIP: sp.server.Addr(), Port: 80}}); err != nil {
		return nil, fmt.Errorf("publish the server's port: %w", err)
	}
	sp.published = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hp)))
	return b, nil
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// start creates the pair's two VMs, a file to serve and the server.
func (pr *netPair) start(ctx context.Context, ref string) error {
	var err error
	for i, sb := range []**container.VM{&pr.server, &pr.client} {
		if *sb, err = pr.rt.Create(ctx, container.VMConfig{
			Name: fmt.Sprintf("net-%s-%d", pr.name, i), ImageRef: ref, MemoryBytes: containerMemory,
		}); err != nil {
			return fmt.Errorf("create VM: %w", err)
		}
	}
	script := "dd if=/dev/zero of=/tmp/big bs=1M count=" + strconv.Itoa(netTransferBytes>>20) + " 2>/dev/null && exec httpd -f -p 80 -h /tmp"
	if _, err := pr.server.Start(ctx, container.ProcessConfig{ID: "httpd", Args: []string{"sh", "-c", script}}); err != nil {
		return fmt.Errorf("start httpd: %w", err)
	}
	pr.serverAddr = pr.server.IP()
	// Ready once the file is complete and served.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := guestFetch(ctx, pr.client, "http://"+pr.serverAddr+"/big"); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("the server VM does not serve: %w", err)
		}
		time.Sleep(time.Second)
	}
}

// guestFetch downloads url to /dev/null inside sb and returns how long the
// download took by the guest's clock.
func guestFetch(ctx context.Context, sb *container.VM, url string) (time.Duration, error) {
	var out bytes.Buffer
	script := `read a _ < /proc/uptime; wget -q -O /dev/null "$1" || exit 1; read b _ < /proc/uptime; echo "$a $b"`
	st, err := sb.Exec(ctx, container.ProcessConfig{ID: "fetch-" + strconv.FormatInt(time.Now().UnixNano(), 36), Args: []string{"sh", "-c", script, "fetch", url}},
		container.IO{Stdout: &out, Stderr: &out})
	if err != nil {
		return 0, err
	}
	if st.Code != 0 {
		return 0, fmt.Errorf("wget %s: exit %d: %s", url, st.Code, out.String())
	}
	f := strings.Fields(out.String())
	if len(f) != 2 {
		return 0, fmt.Errorf("wget %s: %q", url, out.String())
	}
	a, err1 := strconv.ParseFloat(f[0], 64)
	b, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || b < a {
		return 0, fmt.Errorf("wget %s: uptimes %q", url, out.String())
	}
	// /proc/uptime has centiseconds: a floor of 10 ms per transfer.
	return max(time.Duration((b-a)*float64(time.Second)), 10*time.Millisecond), nil
}

// serveZeros serves netTransferBytes of zeros at every path.
func serveZeros(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, 64<<10)
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(netTransferBytes))
		for left := netTransferBytes; left > 0; left -= len(zeros) {
			if _, err := w.Write(zeros[:min(left, len(zeros))]); err != nil {
				return
			}
		}
	}))
	return ln, nil
}

// hostGet returns a host-side fetcher.
func hostGet() func(ctx context.Context, url string) (time.Duration, error) {
	return func(ctx context.Context, url string) (time.Duration, error) {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != netTransferBytes {
			return 0, fmt.Errorf("GET %s: %d bytes, %v", url, n, err)
		}
		return time.Since(start), nil
	}
}

// netSample is one round of one network.
type netSample struct {
	vmToVM, hostToVM, vmToHost, loopback time.Duration
}

func (pr *netPair) round(ctx context.Context) (s netSample, err error) {
	if s.vmToVM, err = guestFetch(ctx, pr.client, "http://"+pr.serverAddr+"/big"); err != nil {
		return s, fmt.Errorf("VM→VM: %w", err)
	}
	if s.hostToVM, err = guestFetch(ctx, pr.client, pr.hostServer+"/"); err != nil {
		return s, fmt.Errorf("host→VM: %w", err)
	}
	if s.vmToHost, err = pr.fromHost(ctx, "http://"+pr.published+"/big"); err != nil {
		return s, fmt.Errorf("VM→host: %w", err)
	}
	if s.loopback, err = guestFetch(ctx, pr.server, "http://127.0.0.1/big"); err != nil {
		return s, fmt.Errorf("loopback: %w", err)
	}
	return s, nil
}

func (b *netBench) close(ctx context.Context) {
	for i := len(b.pairs) - 1; i >= 0; i-- {
		pr := b.pairs[i]
		if pr == nil {
			continue
		}
		for _, sb := range []*container.VM{pr.client, pr.server} {
			if sb != nil {
				_ = sb.Delete(ctx)
			}
		}
		if pr.net != nil {
			_ = pr.net.Teardown(ctx)
		}
		for _, c := range pr.closers {
			c()
		}
	}
	if b.p != nil {
		b.p.close(ctx)
	}
}

// mbps is a transfer's rate in MB/s.
func mbps(d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(netTransferBytes) / 1e6 / d.Seconds()
}

// runNet measures the pod network (skip with -skip net).
func runNet(ctx context.Context, o options, work string, log *slog.Logger) section {
	sec := section{Title: fmt.Sprintf("pod network: TCP throughput, %d MiB per transfer (MB/s, median)", netTransferBytes>>20)}
	bundle, err := guest.Find(o.guestDir)
	if err != nil {
		sec.Rows = append(sec.Rows, missing("switch VM→VM", "", err.Error()))
		return sec
	}
	b, err := newNetBench(ctx, o, bundle, work, log)
	if err != nil {
		sec.Rows = append(sec.Rows, missing("switch VM→VM", "", err.Error()))
		return sec
	}
	defer b.close(context.WithoutCancel(ctx))
	pr := b.pairs[0]
	var samples []netSample
	for r := 0; r <= o.rounds && ctx.Err() == nil; r++ {
		s, err := pr.round(ctx)
		if err != nil {
			sec.Rows = append(sec.Rows, missing(pr.name, "", err.Error()))
			return sec
		}
		if r == 0 {
			continue // warm-up
		}
		samples = append(samples, s)
		log.Debug("network round", "round", r, "vmToVM", s.vmToVM, "hostToVM", s.hostToVM, "vmToHost", s.vmToHost, "loopback", s.loopback)
	}
	med := func(pick func(netSample) time.Duration) time.Duration {
		var ds []time.Duration
		for _, s := range samples {
			ds = append(ds, pick(s))
		}
		return median(ds)
	}
	loop := mbps(med(func(s netSample) time.Duration { return s.loopback }))
	for _, f := range []struct {
		id, what string
		pick     func(netSample) time.Duration
	}{
		{"vm-vm", "VM→VM (pod to pod)", func(s netSample) time.Duration { return s.vmToVM }},
		{"host-vm", "host→VM (a pod downloads from the host)", func(s netSample) time.Duration { return s.hostToVM }},
		{"vm-host", "VM→host (the host downloads from a pod)", func(s netSample) time.Duration { return s.vmToHost }},
	} {
		sw := mbps(med(f.pick))
		sec.Rows = append(sec.Rows, measured(results.Figure{ID: "net.switch-" + f.id,
			Figure: "pod network TCP throughput through the switch, " + f.what + ", against the guest's own loopback",
			Value:  sw, Unit: "MB/s", Reference: &results.Reference{Name: "the loopback", Value: loop}, Ratio: ratio(sw, loop),
			Detail: fmt.Sprintf("%d MiB transfers, %d rounds, medians", netTransferBytes>>20, len(samples))}))
	}
	return sec
}
