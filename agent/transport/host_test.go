package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// socketpair returns the two ends of a unix stream socketpair, the kind of
// byte stream the hypervisor gives the host (QEMU's chardev socket).
func socketpair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int, name string) net.Conn {
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := conn(fds[0], "host"), conn(fds[1], "device")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// fakeDevice is the guest's side of a console port over one end of a
// socketpair, with Linux virtio_console's semantics: the guest opens and
// closes the port while the host's byte stream goes on; bytes the host
// sends while the port is closed are kept for the next open (QEMU holds
// them back) unless drop is set (Linux's generic port drops them).
type fakeDevice struct {
	dev  net.Conn
	drop bool

	mu      sync.Mutex
	cond    *sync.Cond
	pending []byte
	open    *deviceHandle
	eof     bool
}

func newFakeDevice(dev net.Conn, drop bool) *fakeDevice {
	d := &fakeDevice{dev: dev, drop: drop}
	d.cond = sync.NewCond(&d.mu)
	go d.pump()
	return d
}

func (d *fakeDevice) pump() {
	buf := make([]byte, 4096)
	for {
		n, err := d.dev.Read(buf)
		d.mu.Lock()
		if d.open != nil || !d.drop {
			d.pending = append(d.pending, buf[:n]...)
		}
		if err != nil {
			d.eof = true
		}
		d.cond.Broadcast()
		d.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Connect opens the port, as VirtioPort.Connect does.
func (d *fakeDevice) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.open != nil {
		return nil, errors.New("port already open")
	}
	if d.drop {
		d.pending = nil
	}
	h := &deviceHandle{d: d}
	d.open = h
	return h, nil
}

// deviceHandle is one open of the port.
type deviceHandle struct {
	d        *fakeDevice
	closed   bool
	deadline time.Time
}

func (h *deviceHandle) Read(b []byte) (int, error) {
	d := h.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.pending) == 0 && !h.closed && !d.eof {
		d.cond.Wait()
	}
	if h.closed {
		return 0, net.ErrClosed
	}
	if len(d.pending) == 0 {
		return 0, io.EOF
	}
	n := copy(b, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

func (h *deviceHandle) Write(b []byte) (int, error) {
	h.d.mu.Lock()
	closed := h.closed
	h.d.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	return h.d.dev.Write(b)
}

func (h *deviceHandle) SetWriteDeadline(t time.Time) error { return h.d.dev.SetWriteDeadline(t) }

func (h *deviceHandle) Close() error {
	d := h.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if !h.closed {
		h.closed = true
		d.open = nil
		d.cond.Broadcast()
	}
	return nil
}

// inject writes raw bytes from the guest side, outside any session.
func (d *fakeDevice) inject(t *testing.T, b []byte) {
	t.Helper()
	if _, err := d.dev.Write(b); err != nil {
		t.Fatal(err)
	}
}

var garbage = append([]byte("\x00\x01 not yamux \xff\x7fVKA junk \x7fVKAVHLO truncated"), bytes.Repeat([]byte{0x7f, 0}, 100)...)

func waitSessions(t *testing.T, h *Host, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.Sessions() < n {
		if time.Now().After(deadline) {
			t.Fatalf("host sessions = %d, want %d", h.Sessions(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGarbageBothWaysBeforeTheHandshake(t *testing.T) {
	for _, drop := range []bool{false, true} {
		name := "held"
		if drop {
			name = "dropped"
		}
		t.Run("host bytes "+name, func(t *testing.T) {
			hostEnd, devEnd := socketpair(t)
			dev := newFakeDevice(devEnd, drop)
			// Host bytes before the guest opens its end; guest bytes
			// before its hello.
			if _, err := hostEnd.Write(garbage); err != nil {
				t.Fatal(err)
			}
			dev.inject(t, garbage)
			time.Sleep(20 * time.Millisecond) // let the device take the host's bytes first
			h := Serve(hostEnd, nil)
			defer h.Close()
			port := PortFunc(func(ctx context.Context) (io.ReadWriteCloser, error) {
				rwc, err := dev.Connect(ctx)
				if err == nil {
					dev.inject(t, garbage) // more, between opening and hello
				}
				return rwc, err
			})
			l := Listen(context.Background(), port, nil)
			defer l.Close()
			go echo(l)
			roundTrip(t, h, "first")
			roundTrip(t, h, "second")
			if h.Sessions() != 1 || l.Sessions() != 1 {
				t.Fatalf("sessions host %d guest %d, want 1 and 1", h.Sessions(), l.Sessions())
			}
		})
	}
}

func TestGuestReconnectGetsAFreshSession(t *testing.T) {
	hostEnd, devEnd := socketpair(t)
	dev := newFakeDevice(devEnd, true)
	h := Serve(hostEnd, nil)
	defer h.Close()
	first := Listen(context.Background(), dev, nil)
	go echo(first)
	roundTrip(t, h, "before")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	held, err := h.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The guest reboots: its agent starts afresh (new nonce) on the same
	// port while the host's byte stream goes on.
	first.Close()
	second := Listen(context.Background(), dev, nil)
	defer second.Close()
	go echo(second)
	waitSessions(t, h, 2)
	// A stream of the old session ends instead of hanging.
	held.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a stream of the replaced session: %v, want it closed", err)
	}
	roundTrip(t, h, "after")
	if second.Sessions() != 1 {
		t.Fatalf("new guest sessions = %d", second.Sessions())
	}
}

// echoOverPort connects a host and a guest echo server over a fake port
// that drops host bytes until the guest opens it; both end with the test.
func echoOverPort(t *testing.T) (*Host, *Listener, *fakeDevice) {
	hostEnd, devEnd := socketpair(t)
	dev := newFakeDevice(devEnd, true)
	h := Serve(hostEnd, nil)
	l := Listen(context.Background(), dev, nil)
	t.Cleanup(func() {
		l.Close()
		h.Close()
	})
	go echo(l)
	return h, l, dev
}

func TestHostResetMakesTheGuestSayHelloAgain(t *testing.T) {
	h, l, _ := echoOverPort(t)
	roundTrip(t, h, "one")
	if err := h.Reset("test"); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, h, "two") // Open waits for the next session
	if h.Sessions() != 2 || l.Sessions() != 2 {
		t.Fatalf("sessions host %d guest %d, want 2 and 2", h.Sessions(), l.Sessions())
	}
}

// The guest may answer a reset, and the host take its new session, before
// Reset has ended the old one: Reset must then keep the new session, not
// drop it (the guest would hold it and never say hello again, and Open
// would wait for ever; flake 6, once in 100 -race runs under load).
func TestHostResetKeepsTheSessionTheGuestAnsweredWith(t *testing.T) {
	h, l, _ := echoOverPort(t)
	roundTrip(t, h, "one")
	h.mu.Lock()
	first := h.cur
	h.mu.Unlock()
	h.resetSent = func() {
		// The guest's new session is current.
		waitFor(t, "the guest's new session", func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.cur != nil && h.cur != first
		})
	}
	if err := h.Reset("test"); err != nil {
		t.Fatal(err)
	}
	h.resetSent = nil
	roundTrip(t, h, "two")
	if h.Sessions() != 2 || l.Sessions() != 2 {
		t.Fatalf("sessions host %d guest %d, want 2 and 2", h.Sessions(), l.Sessions())
	}
}

func TestHostResyncsAfterGarbageMidSession(t *testing.T) {
	h, _, dev := echoOverPort(t)
	roundTrip(t, h, "one")
	// The session is idle, so this lands between two frames: the host
	// finds neither a frame nor a hello, resets, and the guest reconnects.
	dev.inject(t, []byte("\x42 lost bytes"))
	waitSessions(t, h, 2)
	roundTrip(t, h, "two")
}

func TestOpenWaitsForTheHelloAndHonoursTheContext(t *testing.T) {
	hostEnd, _ := socketpair(t)
	h := Serve(hostEnd, nil)
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.Open(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open without a guest: %v", err)
	}
	h.Close()
	if _, err := h.Open(context.Background()); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Open after Close: %v", err)
	}
}

func TestFrameWriterCompletesAFrameItWasCutIn(t *testing.T) {
	var out bytes.Buffer
	p := &portWriter{w: &out}
	fw := newFrameWriter(p)
	p.cur = fw
	hdr := make([]byte, yamuxHeaderSize)
	hdr[1] = yamuxTypeData
	binary.BigEndian.PutUint32(hdr[8:], 10)
	fw.Write(hdr)
	fw.Write([]byte("abcd")) // 6 body bytes still to come
	id := hello{Version: ProtocolVersion, Session: 7}
	if err := p.handOver(id.encode(ackMagic), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write([]byte("ef")); !errors.Is(err, errSessionCut) {
		t.Fatalf("write after cut: %v", err)
	}
	// A reader at the boundary sees one whole frame, then the ack.
	r := bufio.NewReader(&out)
	kind, _, body, err := peekKind(r)
	if err != nil || kind != kindFrame || body != 10 {
		t.Fatalf("first: kind %v body %d err %v", kind, body, err)
	}
	var frame bytes.Buffer
	if ok, err := copyFrame(&frame, r, body); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if !bytes.Equal(frame.Bytes()[yamuxHeaderSize:], []byte("abcd\x00\x00\x00\x00\x00\x00")) {
		t.Fatalf("frame body %q", frame.Bytes()[yamuxHeaderSize:])
	}
	if kind, _, _, _ := peekKind(r); kind != kindHello {
		t.Fatalf("after the frame: kind %v, want the ack", kind)
	}
	got, n, err := scanFor(r, ackMagic)
	if err != nil || n != 0 || got != id {
		t.Fatalf("ack %v discarded %d err %v", got, n, err)
	}
}

func TestHelloRoundTripAndCorruption(t *testing.T) {
	id := hello{Version: ProtocolVersion, Nonce: [16]byte{1, 2, 3}, Session: 3}
	b := id.encode(helloMagic)
	if got, err := decodeHello(b, helloMagic); err != nil || got != id {
		t.Fatalf("decode: %v %v", got, err)
	}
	if _, err := decodeHello(b, ackMagic); err == nil {
		t.Fatal("a hello decoded as an ack")
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x10
		if _, err := decodeHello(c, helloMagic); err == nil {
			t.Fatalf("corrupted byte %d accepted", i)
		}
	}
	// Found behind garbage, with the garbage counted.
	stream := append(append(bytes.Clone(garbage), b[:20]...), b...)
	got, n, err := scanFor(bufio.NewReaderSize(bytes.NewReader(stream), 64), helloMagic)
	if err != nil || got != id || n != len(garbage)+20 {
		t.Fatalf("scan: %v discarded %d (want %d) err %v", got, n, len(garbage)+20, err)
	}
}

func TestHostIgnoresRepeatedAndStaleHellos(t *testing.T) {
	hostEnd, guest := socketpair(t)
	h := Serve(hostEnd, nil)
	defer h.Close()
	r := bufio.NewReader(guest)
	id := hello{Version: ProtocolVersion, Nonce: [16]byte{9}, Session: 1}
	say := func(id hello) {
		t.Helper()
		if _, err := guest.Write(id.encode(helloMagic)); err != nil {
			t.Fatal(err)
		}
	}
	say(id)
	say(id) // a repeat before the ack was read
	if ack, _, err := scanFor(r, ackMagic); err != nil || ack != id {
		t.Fatalf("ack %v %v", ack, err)
	}
	if err := h.Reset("test"); err != nil {
		t.Fatal(err)
	}
	say(id) // delayed past the reset: not a new session
	next := id
	next.Session = 2
	say(next)
	if ack, _, err := scanFor(r, ackMagic); err != nil || ack != next {
		t.Fatalf("second ack %v %v, want %v", ack, err, next)
	}
	if n := h.Sessions(); n != 2 {
		t.Fatalf("sessions = %d, want 2", n)
	}
	// Another boot starts with session 1 again, under a new nonce.
	reboot := hello{Version: ProtocolVersion, Nonce: [16]byte{10}, Session: 1}
	say(reboot)
	if ack, _, err := scanFor(r, ackMagic); err != nil || ack != reboot {
		t.Fatalf("ack after reboot %v %v", ack, err)
	}
	if n := h.Sessions(); n != 3 {
		t.Fatalf("sessions = %d, want 3", n)
	}
}
