package shim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/api/agentgrpc"
	"github.com/vk-applevm/vk-applevm/agent/logframe"
	"github.com/vk-applevm/vk-applevm/agent/transport"
	"github.com/vk-applevm/vk-applevm/vm"
)

// Environment knobs of the fake machine, read inside the shim process.
const (
	// envFakeHypervisor makes the test binary the hypervisor stand-in: it
	// sleeps until killed.
	envFakeHypervisor = "VKAV_SHIM_TEST_HYPERVISOR"
	// envIgnoreStop makes the fake guest ignore Shutdown and RequestStop.
	envIgnoreStop = "VKAV_FAKE_IGNORE_STOP"
	// envNoPdeathsig starts the stand-in without PDEATHSIG, so it outlives
	// a killed shim.
	envNoPdeathsig = "VKAV_FAKE_NO_PDEATHSIG"
	// envStartFail makes Driver.Start fail with its value.
	envStartFail = "VKAV_FAKE_START_FAIL"
	// envStartDelay makes Driver.Start sleep this long (a Go duration).
	envStartDelay = "VKAV_FAKE_START_DELAY"
	// envBalloon makes the machine a vm.BalloonMachine (as vz's are) and
	// the fake agent answer Stats for a guest using 100 MiB.
	envBalloon = "VKAV_FAKE_BALLOON"
)

// fakeDriver boots a fake machine: a child process standing in for the
// hypervisor (so pids, start times and PDEATHSIG are real) and a fake guest
// serving the console ports over socketpairs.
type fakeDriver struct{}

func (fakeDriver) Name() string                    { return "fake" }
func (fakeDriver) Check(ctx context.Context) error { return nil }

func (fakeDriver) Start(ctx context.Context, spec vm.Spec, dir string) (vm.Machine, error) {
	if d, err := time.ParseDuration(os.Getenv(envStartDelay)); err == nil {
		time.Sleep(d)
	}
	if msg := os.Getenv(envStartFail); msg != "" {
		fmt.Fprintln(os.Stderr, "fake driver: refusing to start:", msg)
		return nil, errors.New(msg)
	}
	m := &fakeMachine{
		done: make(chan struct{}), host: map[string]net.Conn{},
		ignoreStop: os.Getenv(envIgnoreStop) == "1",
	}
	if err := m.startHypervisor(os.Getenv(envNoPdeathsig) != "1"); err != nil {
		return nil, err
	}
	for _, name := range spec.Ports {
		host, guest, err := socketPair()
		if err != nil {
			m.stop(err)
			return nil, err
		}
		m.host[name] = host
		m.guest = append(m.guest, guest)
		switch name {
		case vm.AgentPort:
			g := &fakeGuest{m: m, session: newSessionID()}
			go g.serveAgent(guest)
		case vm.LogPort:
			m.logPort = guest
		}
	}
	if os.Getenv(envBalloon) == "1" {
		return balloonFakeMachine{m}, nil
	}
	return m, nil
}

// balloonFakeMachine has a traditional balloon: the targets it is given go
// to stderr (shim.log), where tests read them.
type balloonFakeMachine struct{ *fakeMachine }

func (balloonFakeMachine) SetMemoryTarget(ctx context.Context, bytes uint64) error {
	fmt.Fprintf(os.Stderr, "fake balloon: target %d MiB\n", bytes>>20)
	return nil
}

func newSessionID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func socketPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "port")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("socketpair conn: %w", err)
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}

type fakeMachine struct {
	hv         *os.Process
	host       map[string]net.Conn
	guest      []net.Conn
	logPort    net.Conn
	logMu      sync.Mutex
	ignoreStop bool

	once sync.Once
	err  error
	done chan struct{}
	hvOK chan struct{} // closed when the stand-in has exited
}

// startHypervisor starts the stand-in from a goroutine that keeps its OS
// thread locked until the child exits: PDEATHSIG fires when the creating
// thread exits, not the process (Go issue 27505).
func (m *fakeMachine) startHypervisor(pdeathsig bool) error {
	m.hvOK = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envFakeHypervisor+"=1")
		if pdeathsig {
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}
		if err := cmd.Start(); err != nil {
			close(m.hvOK)
			started <- fmt.Errorf("start hypervisor stand-in: %w", err)
			return
		}
		m.hv = cmd.Process
		started <- nil
		err := cmd.Wait()
		close(m.hvOK)
		m.stop(fmt.Errorf("hypervisor exited: %v", err))
	}()
	return <-started
}

// stop ends the machine once: the stand-in is killed and the guest ends of
// the ports close, so the host ends read EOF as with a real hypervisor.
func (m *fakeMachine) stop(cause error) {
	m.once.Do(func() {
		m.err = cause
		if m.hv != nil {
			_ = m.hv.Kill()
			<-m.hvOK
		}
		for _, c := range m.guest {
			c.Close()
		}
		close(m.done)
	})
}

func (m *fakeMachine) Port(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	c, ok := m.host[name]
	if !ok {
		return nil, fmt.Errorf("no port %q", name)
	}
	delete(m.host, name)
	return c, nil
}

func (m *fakeMachine) RequestStop(ctx context.Context) error {
	if !m.ignoreStop {
		go func() {
			time.Sleep(20 * time.Millisecond)
			m.stop(nil)
		}()
	}
	return nil
}

func (m *fakeMachine) Kill() error {
	m.stop(errors.New("killed"))
	return nil
}

func (m *fakeMachine) Done() <-chan struct{} { return m.done }
func (m *fakeMachine) Err() error            { <-m.done; return m.err }
func (m *fakeMachine) Pid() int              { return m.hv.Pid }

func (m *fakeMachine) writeLog(f logframe.Frame) error {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	if m.logPort == nil {
		return errors.New("no log port")
	}
	return logframe.Write(m.logPort, f)
}

// fakeGuest answers on agent streams with a line protocol; the first line
// of a stream picks what it does:
//
//	echo                      copy the rest back, then half-close
//	session                   reply with the session id and streams seen
//	log NAME STREAM HEX       frame HEX-decoded data onto the log port
//	farewell N                send N bytes, then stop the machine at once
//	shutdown                  power off soon (unless ignoring stops)
//	poweroff                  power off soon
//
// Streams that start with the HTTP/2 preface go to a gRPC server with the
// agent API's Shutdown.
type fakeGuest struct {
	m           *fakeMachine
	session     string
	streams     atomic.Int64
	grpcStreams *streamListener
}

func (g *fakeGuest) serveAgent(port net.Conn) {
	// The real guest's transport: hello, ack, then yamux.
	ports := make(chan io.ReadWriteCloser, 1)
	ports <- port
	s := transport.Listen(context.Background(), transport.PortFunc(func(ctx context.Context) (io.ReadWriteCloser, error) {
		select {
		case p := <-ports:
			return p, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-g.m.done:
			return nil, net.ErrClosed
		}
	}), nil)
	defer s.Close()
	go func() {
		<-g.m.done
		s.Close()
	}()
	g.grpcStreams = &streamListener{conns: make(chan net.Conn), done: make(chan struct{})}
	srv := grpc.NewServer()
	agentgrpc.RegisterAgentServer(srv, &fakeAgent{m: g.m})
	go func() { _ = srv.Serve(g.grpcStreams) }()
	defer srv.Stop()
	for {
		c, err := s.Accept()
		if err != nil {
			return
		}
		g.streams.Add(1)
		go g.handle(c)
	}
}

func (g *fakeGuest) handle(c net.Conn) {
	r := bufio.NewReader(c)
	if p, err := r.Peek(3); err == nil && string(p) == "PRI" { // HTTP/2 preface: gRPC
		select {
		case g.grpcStreams.conns <- &bufferedConn{Conn: c, r: r}:
		case <-g.grpcStreams.done:
			c.Close()
		}
		return
	}
	defer c.Close()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "echo":
			_, _ = io.Copy(c, r)
			return
		case "session":
			fmt.Fprintf(c, "%s %d\n", g.session, g.streams.Load())
		case "log":
			var data []byte
			var err error
			if len(f) > 3 {
				data, err = hex.DecodeString(f[3])
			}
			stream := logframe.Stdout
			switch f[2] {
			case "stderr":
				stream = logframe.Stderr
			case "end":
				stream, data = logframe.End, nil
			}
			if err == nil {
				err = g.m.writeLog(logframe.Frame{Name: f[1], Stream: stream, Data: data})
			}
			if err != nil {
				fmt.Fprintf(c, "error %v\n", err)
				continue
			}
			fmt.Fprintln(c, "ok")
		case "farewell":
			// Output, then the machine stops at once: what a process
			// writes just before the guest powers off.
			n, _ := strconv.Atoi(f[1])
			_, _ = c.Write(bytes.Repeat([]byte{'f'}, n))
			g.m.stop(nil)
			return
		case "shutdown", "poweroff":
			fmt.Fprintln(c, "ok")
			if f[0] == "poweroff" || !g.m.ignoreStop {
				go func() {
					time.Sleep(20 * time.Millisecond)
					g.m.stop(nil)
				}()
			}
		default:
			fmt.Fprintf(c, "error unknown command %q\n", f[0])
		}
	}
}

// fakeAgent answers the agent API's Shutdown like the real agent: it
// accepts and powers the guest off shortly after (unless ignoring stops).
type fakeAgent struct {
	agentgrpc.UnimplementedAgentServer
	m *fakeMachine
}

func (a *fakeAgent) Shutdown(ctx context.Context, req *api.ShutdownRequest) (*api.ShutdownResponse, error) {
	fmt.Fprintf(os.Stderr, "fake agent: Shutdown grace=%v\n", time.Duration(req.GracePeriodNs))
	if !a.m.ignoreStop {
		go func() {
			time.Sleep(20 * time.Millisecond)
			a.m.stop(nil)
		}()
	}
	return &api.ShutdownResponse{}, nil
}

// Stats reports a guest of the machine's size using 100 MiB, when the
// machine has a balloon.
func (a *fakeAgent) Stats(ctx context.Context, req *api.StatsRequest) (*api.StatsResponse, error) {
	if os.Getenv(envBalloon) != "1" {
		return a.UnimplementedAgentServer.Stats(ctx, req)
	}
	const total = 640 << 20
	return &api.StatsResponse{GuestMemoryTotalBytes: total, GuestMemoryAvailableBytes: total - 100<<20}, nil
}

// streamListener hands streams that start with the HTTP/2 preface to a gRPC
// server.
type streamListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return &net.UnixAddr{Name: "fake-agent", Net: "unix"} }

// bufferedConn replays what a bufio.Reader has already read from a stream.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

var _ vm.Driver = fakeDriver{}
var _ vm.Machine = (*fakeMachine)(nil)
