package transport

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// pipePort hands the listener the guest ends of net.Pipe pairs; each pair
// is one host connection.
type pipePort struct {
	guests chan net.Conn
}

func (p *pipePort) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	select {
	case c := <-p.guests:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// hostConnects makes a new host connection and serves its host end.
func (p *pipePort) hostConnects(t *testing.T) *Host {
	t.Helper()
	guest, host := net.Pipe()
	p.guests <- guest
	return Serve(host, nil)
}

// echo serves accepted streams by echoing them.
func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func roundTrip(t *testing.T, cs *Host, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := cs.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

func TestListenerServesStreamsAcrossHostReconnects(t *testing.T) {
	port := &pipePort{guests: make(chan net.Conn)}
	l := Listen(context.Background(), port, nil)
	defer l.Close()
	go echo(l)

	first := port.hostConnects(t)
	roundTrip(t, first, "one")
	roundTrip(t, first, "two") // several streams per session
	// The host goes away (node restart): the guest resets its session and
	// serves the next host connection from scratch.
	first.Close()
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("closed session not done")
	}
	second := port.hostConnects(t)
	defer second.Close()
	roundTrip(t, second, "three")
	if n := l.Sessions(); n != 2 {
		t.Fatalf("sessions = %d, want 2", n)
	}
	if _, err := first.Open(context.Background()); err == nil {
		t.Fatal("open on a closed session succeeded")
	}
}

func TestListenerCloseUnblocksAccept(t *testing.T) {
	port := &pipePort{guests: make(chan net.Conn)}
	l := Listen(context.Background(), port, nil)
	cs := port.hostConnects(t)
	defer cs.Close()
	accepted := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		accepted <- err
	}()
	time.Sleep(20 * time.Millisecond)
	l.Close()
	select {
	case err := <-accepted:
		if err == nil {
			t.Fatal("Accept returned a stream after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	// Closing the guest side ends the host's session too.
	select {
	case <-cs.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("host session survived the guest closing")
	}
}

func TestConnectRetriesAfterPortErrors(t *testing.T) {
	calls := 0
	guests := make(chan net.Conn, 1)
	port := PortFunc(func(ctx context.Context) (io.ReadWriteCloser, error) {
		calls++
		if calls == 1 {
			return nil, io.ErrUnexpectedEOF // e.g. the device node not there yet
		}
		select {
		case c := <-guests:
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	l := Listen(context.Background(), port, nil)
	defer l.Close()
	go echo(l)
	guest, host := net.Pipe()
	guests <- guest
	cs := Serve(host, nil)
	defer cs.Close()
	roundTrip(t, cs, "after retry")
}

func TestYamuxConfigSurvivesAPausedGuest(t *testing.T) {
	c := YamuxConfig(nil)
	// A paused VM answers nothing: no keepalive, no open timeout, and a
	// write timeout far beyond any pause.
	if c.EnableKeepAlive || c.StreamOpenTimeout != 0 || c.ConnectionWriteTimeout < time.Hour {
		t.Fatalf("config %+v", c)
	}
}
