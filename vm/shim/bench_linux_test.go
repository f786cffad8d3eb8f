package shim

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/transport"
)

const benchPayload = 4 << 20

// BenchmarkAgentStream moves 4 MiB to the fake guest and back, through
// agent.sock and the shim process (unix socket → shim → yamux stream), and,
// side by side, over a yamux stream used directly on a socketpair in this
// process: the ratio is the cost of the shim's hop.
func BenchmarkAgentStream(b *testing.B) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), benchPayload/16)
	run := func(b *testing.B, dial func() (net.Conn, error)) {
		b.SetBytes(2 * benchPayload)
		for b.Loop() {
			conn, err := dial()
			if err != nil {
				b.Fatal(err)
			}
			got, err := echoThrough(conn, payload)
			conn.Close()
			if err != nil || len(got) != len(payload) {
				b.Fatalf("echo: %d bytes, %v", len(got), err)
			}
		}
	}
	b.Run("via-shim", func(b *testing.B) {
		v := launchFake(b, nil)
		run(b, func() (net.Conn, error) { return v.DialAgent(context.Background()) })
	})
	b.Run("direct-yamux", func(b *testing.B) {
		host, guest, err := socketPair()
		if err != nil {
			b.Fatal(err)
		}
		g := &fakeGuest{m: &fakeMachine{done: make(chan struct{})}, session: "direct"}
		go g.serveAgent(guest)
		session := transport.Serve(host, nil)
		defer session.Close()
		run(b, func() (net.Conn, error) {
			s, err := session.Open(context.Background())
			if err != nil {
				return nil, err
			}
			// echoThrough half-closes through CloseWrite, as on a unix conn.
			return halfCloser{s}, nil
		})
	})
}

// halfCloser gives a yamux stream the CloseWrite of a unix connection: a
// yamux stream's Close is a half-close.
type halfCloser struct{ net.Conn }

func (h halfCloser) CloseWrite() error { return h.Conn.Close() }

// BenchmarkLaunch measures Launch (re-exec, fake driver start, ports,
// readiness report) followed by Kill and Delete.
func BenchmarkLaunch(b *testing.B) {
	for b.Loop() {
		v := launchFake(b, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := v.Delete(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
}
