package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/agenttest"
	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
	"github.com/vk-applevm/vk-applevm/agent/logframe"
	"github.com/vk-applevm/vk-applevm/agent/transport"
)

// The tests run the real server in-process, reached over a real yamux
// session on a socketpair, with processes chrooted into a busybox rootfs on
// loop-device ext4 disks, inside private namespaces (agenttest.Main).

var (
	fixture    *agenttest.Fixture
	cgroupRoot string
)

func TestMain(m *testing.M) {
	os.Exit(agenttest.Main(m, func() (func(), error) {
		// The private network namespace starts with loopback down; the
		// agent's own LoopbackUp brings it up, as PID 1 does in the guest.
		if err := agent.LoopbackUp(); err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "vkav-agent-test-")
		if err != nil {
			return nil, err
		}
		f, err := agenttest.NewFixture(dir)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		root, err := agenttest.Cgroup2Root(dir)
		if err != nil {
			f.Close()
			os.RemoveAll(dir)
			return nil, err
		}
		fixture, cgroupRoot = f, root
		return func() {
			// The server removes each container's cgroup.
			if err := agenttest.RemoveCgroup2Root(cgroupRoot); err != nil {
				println(err.Error())
			}
			if err := f.Close(); err != nil {
				println(err.Error())
			}
			os.RemoveAll(dir)
		}, nil
	}))
}

func testLogger() *slog.Logger {
	if os.Getenv("VKAV_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is one agent server and a client connected to it.
type env struct {
	srv      *agent.Server
	cl       *client.Client
	logs     *logframe.Reader // the host end of the log port
	powerOff chan struct{}
	sessions *transport.Host
}

// socketpair returns two connected stream sockets.
func socketpair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

func newEnv(t *testing.T, opts ...func(*agent.Config)) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := testLogger()
	reaper := agent.NewReaper(false, nil, log)
	go reaper.Run(ctx)
	logGuest, logHost := socketpair(t)
	e := &env{logs: logframe.NewReader(logHost), powerOff: make(chan struct{})}
	cfg := agent.Config{
		Version:     "test-version",
		Log:         log,
		StateDir:    t.TempDir(),
		SysBlockDir: fixture.SysBlockDir,
		DevDir:      "/dev",
		CgroupRoot:  cgroupRoot,
		Reaper:      reaper,
		LogSink:     logGuest,
		DiskWait:    2 * time.Second,
		SetClock:    func(time.Time) error { return nil },
		PowerOff:    func() { close(e.powerOff) },
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	guest, host := socketpair(t)
	port := make(chan io.ReadWriteCloser, 1)
	port <- guest
	l := transport.Listen(ctx, transport.PortFunc(func(ctx context.Context) (io.ReadWriteCloser, error) {
		select {
		case c := <-port:
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}), log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	cs := transport.Serve(host, log)
	e.sessions = cs
	cl, err := client.Dial(ctx, cs.Open)
	if err != nil {
		t.Fatal(err)
	}
	e.cl = cl
	t.Cleanup(func() {
		cl.Close()
		closeCtx, cc := context.WithTimeout(context.Background(), 10*time.Second)
		defer cc()
		if err := srv.Close(closeCtx); err != nil {
			t.Errorf("close server: %v", err)
		}
		cancel()
		cs.Close()
		l.Close()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		logGuest.Close()
		logHost.Close()
	})
	return e
}

// logFrames reads the log port in the background until it closes.
func (e *env) logFrames() <-chan logframe.Frame {
	frames := make(chan logframe.Frame, 1024)
	go func() {
		defer close(frames)
		for {
			f, err := e.logs.Next()
			if err != nil {
				return
			}
			frames <- f
		}
	}()
	return frames
}

// uniqueID names a container uniquely across concurrent test runs, which
// share the cgroup hierarchy.
func uniqueID(name string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return name + "-" + hex.EncodeToString(b)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// createContainer makes a container on the fixture's disks.
func (e *env) createContainer(t *testing.T, name string, mod ...func(*api.CreateContainerRequest)) string {
	t.Helper()
	id := uniqueID(name)
	req := &api.CreateContainerRequest{ContainerId: id, RootfsDisk: fixture.ImageSerial, ScratchDisk: fixture.ScratchSerial, Hostname: "box-" + name}
	for _, m := range mod {
		m(req)
	}
	if _, err := e.cl.CreateContainer(ctxT(t), req); err != nil {
		t.Fatalf("create container: %v", err)
	}
	return id
}

// result is what run collected.
type result struct {
	stdout, stderr string
	exit           *api.ExitStatus
	err            error
}

// run executes args in container id through client.Exec.
func (e *env) run(t *testing.T, id string, o client.ExecOptions) result {
	t.Helper()
	var out, errb strings.Builder
	o.ContainerID = id
	if o.ProcessID == "" {
		o.ProcessID = uniqueID("p")
	}
	if o.Stdout == nil {
		o.Stdout = &out
	}
	if o.Stderr == nil && !o.TTY {
		o.Stderr = &errb
	}
	st, err := e.cl.Exec(ctxT(t), o)
	return result{stdout: out.String(), stderr: errb.String(), exit: st, err: err}
}

func sh(script string) []string { return []string{"sh", "-c", script} }

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
