package agent_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

func TestForwardWithHalfClose(t *testing.T) {
	e := newEnv(t)
	// A server on loopback of the test's own network namespace: it reads
	// to EOF (our half-close), then answers and closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		in, _ := io.ReadAll(c)
		c.Write([]byte("echo:" + string(in)))
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	st, err := e.cl.Forward(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&api.ForwardRequest{Port: uint32(port), Data: []byte("hel")}); err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&api.ForwardRequest{Data: []byte("lo")}); err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&api.ForwardRequest{CloseWrite: true}); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("forward ended before the guest side's close: %v (got %q)", err, got.String())
		}
		got.Write(m.GetData())
		if m.GetCloseWrite() {
			break
		}
	}
	if got.String() != "echo:hello" {
		t.Fatalf("got %q", got.String())
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after both sides closed: %v, want EOF", err)
	}
}

func TestForwardToClosedPort(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	st, err := e.cl.Forward(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&api.ForwardRequest{Port: uint32(port)}); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
}
