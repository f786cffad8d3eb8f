package grpcserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/vk-applevm/vk-applevm/agent/grpcserver"
)

// The tests drive the server with grpc-go's client, the one the host uses,
// over a unix socket. Messages are protobuf's wrapper types.

type env struct {
	srv    *grpcserver.Server
	client *grpc.ClientConn
	served chan error
}

func start(t *testing.T, opts grpcserver.Options, register func(*grpcserver.Server)) *env {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: grpcserver.New(opts), served: make(chan error, 1)}
	register(e.srv)
	go func() { e.served <- e.srv.Serve(l) }()
	e.client, err = grpc.NewClient("passthrough:///test",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.client.Close()
		e.srv.Stop()
	})
	return e
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var bidi = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

func echo(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String("echo: " + in.GetValue()), nil
}

func TestUnary(t *testing.T) {
	e := start(t, grpcserver.Options{}, func(s *grpcserver.Server) { grpcserver.HandleUnary(s, "/t.T/Echo", echo) })
	for _, in := range []string{"", "hello", strings.Repeat("x", 100<<10)} {
		out := new(wrapperspb.StringValue)
		if err := e.client.Invoke(ctxFor(t, 10*time.Second), "/t.T/Echo", wrapperspb.String(in), out); err != nil {
			t.Fatalf("Echo(%d bytes): %v", len(in), err)
		}
		if out.GetValue() != "echo: "+in {
			t.Fatalf("Echo(%d bytes) = %d bytes", len(in), len(out.GetValue()))
		}
	}
}

func TestConcurrentUnary(t *testing.T) {
	e := start(t, grpcserver.Options{}, func(s *grpcserver.Server) { grpcserver.HandleUnary(s, "/t.T/Echo", echo) })
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := fmt.Sprintf("call %d %s", i, strings.Repeat("y", i*1000))
			out := new(wrapperspb.StringValue)
			if err := e.client.Invoke(ctxFor(t, 20*time.Second), "/t.T/Echo", wrapperspb.String(in), out); err != nil {
				errs <- err
			} else if out.GetValue() != "echo: "+in {
				errs <- fmt.Errorf("call %d: wrong answer", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStatusReachesTheClient(t *testing.T) {
	detail := durationpb.New(3 * time.Second)
	message := "not there: 100% \"quoted\" naïve\nsecond line " + strings.Repeat("long ", 8000)
	e := start(t, grpcserver.Options{}, func(s *grpcserver.Server) {
		grpcserver.HandleUnary(s, "/t.T/Fail", func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			st, err := status.New(codes.NotFound, message).WithDetails(detail)
			if err != nil {
				return nil, err
			}
			return nil, st.Err()
		})
		grpcserver.HandleUnary(s, "/t.T/Plain", func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return nil, errors.New("plain error")
		})
	})
	err := e.client.Invoke(ctxFor(t, 10*time.Second), "/t.T/Fail", wrapperspb.String(""), new(wrapperspb.StringValue))
	st := status.Convert(err)
	if st.Code() != codes.NotFound || st.Message() != message {
		t.Fatalf("Fail: code %v, message %q", st.Code(), st.Message())
	}
	if d := st.Details(); len(d) != 1 || d[0].(*durationpb.Duration).AsDuration() != 3*time.Second {
		t.Fatalf("Fail: details %v", d)
	}
	err = e.client.Invoke(ctxFor(t, 10*time.Second), "/t.T/Plain", wrapperspb.String(""), new(wrapperspb.StringValue))
	if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != "plain error" {
		t.Fatalf("Plain: %v", err)
	}
	err = e.client.Invoke(ctxFor(t, 10*time.Second), "/t.T/Missing", wrapperspb.String(""), new(wrapperspb.StringValue))
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method: %v, want Unimplemented", err)
	}
}

func TestMessageLimit(t *testing.T) {
	e := start(t, grpcserver.Options{MaxRecvMsgSize: 2 << 20}, func(s *grpcserver.Server) { grpcserver.HandleUnary(s, "/t.T/Echo", echo) })
	out := new(wrapperspb.StringValue)
	if err := e.client.Invoke(ctxFor(t, 20*time.Second), "/t.T/Echo", wrapperspb.String(strings.Repeat("z", 2<<20-16)), out); err != nil {
		t.Fatalf("a message just under the limit, past the flow-control windows: %v", err)
	}
	err := e.client.Invoke(ctxFor(t, 20*time.Second), "/t.T/Echo", wrapperspb.String(strings.Repeat("z", 3<<20)), out)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a message over the limit: %v, want ResourceExhausted", err)
	}
	// The connection is still good.
	if err := e.client.Invoke(ctxFor(t, 10*time.Second), "/t.T/Echo", wrapperspb.String("after"), out); err != nil || out.GetValue() != "echo: after" {
		t.Fatalf("after the refused message: %q, %v", out.GetValue(), err)
	}
}

// TestStreamingBothWays moves 16 MiB each way through one bidirectional
// stream whose handler echoes every message, far beyond every flow-control
// window, and ends with the client's half-close.
func TestStreamingBothWays(t *testing.T) {
	e := start(t, grpcserver.Options{}, func(s *grpcserver.Server) {
		s.HandleStream("/t.T/Echo", func(st *grpcserver.Stream) error {
			for {
				in := new(wrapperspb.BytesValue)
				if err := st.RecvMsg(in); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				if err := st.SendMsg(in); err != nil {
					return err
				}
			}
		})
	})
	cs, err := e.client.NewStream(ctxFor(t, 60*time.Second), bidi, "/t.T/Echo")
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 256, 64 << 10
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			if err := cs.SendMsg(wrapperspb.Bytes(bytes.Repeat([]byte{byte(i)}, size))); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- cs.CloseSend()
	}()
	for i := range n {
		out := new(wrapperspb.BytesValue)
		if err := cs.RecvMsg(out); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(out.GetValue()) != size || out.GetValue()[size-1] != byte(i) {
			t.Fatalf("message %d: %d bytes, wrong content", i, len(out.GetValue()))
		}
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(new(wrapperspb.BytesValue)); err != io.EOF {
		t.Fatalf("after the half-close: %v, want io.EOF", err)
	}
}

// TestSlowReaderIsPaced: a handler that does not read holds the client
// back (stream flow control) without losing anything.
func TestSlowReaderIsPaced(t *testing.T) {
	release := make(chan struct{})
	e := start(t, grpcserver.Options{}, func(s *grpcserver.Server) {
		s.HandleStream("/t.T/Sink", func(st *grpcserver.Stream) error {
			<-release
			total := 0
			for {
				in := new(wrapperspb.BytesValue)
				if err := st.RecvMsg(in); errors.Is(err, io.EOF) {
					return st.SendMsg(wrapperspb.Int64(int64(total)))
				} else if err != nil {
					return err
				}
				total += len(in.GetValue())
			}
		})
	})
	cs, err := e.client.NewStream(ctxFor(t, 60*time.Second), &grpc.StreamDesc{ClientStreams: true}, "/t.T/Sink")
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan int, 1)
	go func() {
		total := 0
		for range 64 {
			if cs.SendMsg(wrapperspb.Bytes(make([]byte, 128<<10))) != nil {
				break
			}
			total += 128 << 10
		}
		cs.CloseSend()
		sent <- total
	}()
	select {
	case n := <-sent:
		t.Fatalf("the client sent all %d bytes to a handler that reads nothing", n)
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	total := <-sent
	got := new(wrapperspb.Int64Value)
	if err := cs.RecvMsg(got); err != nil || got.GetValue() != int64(total) || total != 64*128<<10 {
		t.Fatalf("handler read %d of %d bytes (%v)", got.GetValue(), total, err)
	}
}

func TestCancelAndDeadlineReachTheHandler(t *testing.T) {
	ended := make(chan error, 2)
	e := start(t, grpcserver.Options{}, func(s *grpcserver.Server) {
		s.HandleStream("/t.T/Block", func(st *grpcserver.Stream) error {
			<-st.Context().Done()
			ended <- st.Context().Err()
			return st.Context().Err()
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	cs, err := e.client.NewStream(ctx, bidi, "/t.T/Block")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(wrapperspb.String("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler context after the client's cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client's cancel did not reach the handler")
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	err = e.client.Invoke(dctx, "/t.T/Block", wrapperspb.String("x"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call past its deadline: %v", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Fatalf("handler context after the deadline: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the deadline did not reach the handler")
	}
}

func TestInterceptorAndStop(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	e := start(t, grpcserver.Options{Intercept: func(ctx context.Context, method string, call func() error) error {
		mu.Lock()
		seen = append(seen, method)
		mu.Unlock()
		if err := call(); err != nil {
			return status.Errorf(codes.Aborted, "wrapped: %v", err)
		}
		return nil
	}}, func(s *grpcserver.Server) {
		grpcserver.HandleUnary(s, "/t.T/Echo", echo)
		grpcserver.HandleUnary(s, "/t.T/Fail", func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return nil, errors.New("boom")
		})
	})
	out := new(wrapperspb.StringValue)
	if err := e.client.Invoke(ctxFor(t, 10*time.Second), "/t.T/Echo", wrapperspb.String("a"), out); err != nil {
		t.Fatal(err)
	}
	err := e.client.Invoke(ctxFor(t, 10*time.Second), "/t.T/Fail", wrapperspb.String("a"), out)
	if st := status.Convert(err); st.Code() != codes.Aborted || st.Message() != "wrapped: boom" {
		t.Fatalf("Fail through the interceptor: %v", err)
	}
	mu.Lock()
	if strings.Join(seen, " ") != "/t.T/Echo /t.T/Fail" {
		t.Errorf("interceptor saw %v", seen)
	}
	mu.Unlock()

	e.srv.Stop()
	if err := <-e.served; !errors.Is(err, grpcserver.ErrServerStopped) {
		t.Fatalf("Serve after Stop: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.client.Invoke(ctx, "/t.T/Echo", wrapperspb.String("a"), out); err == nil {
		t.Fatal("a call after Stop succeeded")
	}
}

// TestPanicEndsOnlyTheCall: without an interceptor to recover, a handler's
// panic resets its stream; the server (in PID 1) and the connection go on.
func TestPanicEndsOnlyTheCall(t *testing.T) {
	e := start(t, grpcserver.Options{}, func(s *grpcserver.Server) {
		grpcserver.HandleUnary(s, "/t.T/Echo", echo)
		grpcserver.HandleUnary(s, "/t.T/Panic", func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			panic("handler bug")
		})
	})
	out := new(wrapperspb.StringValue)
	if err := e.client.Invoke(ctxFor(t, 10*time.Second), "/t.T/Panic", wrapperspb.String("a"), out); status.Code(err) != codes.Internal {
		t.Fatalf("a panicking handler: %v, want Internal", err)
	}
	if err := e.client.Invoke(ctxFor(t, 10*time.Second), "/t.T/Echo", wrapperspb.String("after"), out); err != nil || out.GetValue() != "echo: after" {
		t.Fatalf("after the panic: %q, %v", out.GetValue(), err)
	}
}
