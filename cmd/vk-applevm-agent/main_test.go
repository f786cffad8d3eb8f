//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/agenttest"
	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
)

var (
	fixture    *agenttest.Fixture
	cgroupRoot string
	binary     string
)

// The agent binary runs as a separate process in --listen mode, inside the
// tests' private namespaces (its mounts vanish with them).
func TestMain(m *testing.M) {
	os.Exit(agenttest.Main(m, func() (func(), error) {
		if err := agent.LoopbackUp(); err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "vkav-agent-cmd-")
		if err != nil {
			return nil, err
		}
		if fixture, err = agenttest.NewFixture(dir); err != nil {
			return nil, err
		}
		binary = filepath.Join(dir, "vk-applevm-agent")
		// Built as the agent.mk target builds it.
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test-build", "-o", binary, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fixture.Close()
			return nil, fmt.Errorf("build agent: %v: %s", err, out)
		}
		if cgroupRoot, err = agenttest.Cgroup2Root(dir); err != nil {
			return nil, err
		}
		return func() {
			fixture.Close()
			if err := agenttest.RemoveCgroup2Root(cgroupRoot); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			os.RemoveAll(dir)
		}, nil
	}))
}

// agentProc is a running agent binary and a client to it.
type agentProc struct {
	cmd     *exec.Cmd
	cl      *client.Client
	stderr  *bytes.Buffer
	exited  chan struct{} // closed when the process has exited
	waitErr error
}

func startAgent(tb testing.TB, env ...string) *agentProc {
	tb.Helper()
	dir := tb.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(binary, "--listen", "unix:"+sock, "--state-dir", filepath.Join(dir, "state"), "--cgroup-root", cgroupRoot, "--sys-block-dir", fixture.SysBlockDir)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &agentProc{cmd: cmd, stderr: &stderr, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	cl, err := client.Dial(context.Background(), func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	})
	if err != nil {
		tb.Fatal(err)
	}
	p.cl = cl
	tb.Cleanup(func() {
		cl.Close()
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.exited
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.WaitReady(ctx); err != nil {
		tb.Fatalf("agent not ready: %v\n%s", err, stderr.String())
	}
	return p
}

func TestListenModeServesAndShutsDown(t *testing.T) {
	p := startAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := p.cl.Info(ctx, &api.InfoRequest{})
	if err != nil || info.GetVersion() != "test-build" {
		t.Fatalf("info %+v %v", info, err)
	}
	id := fmt.Sprintf("cmd-%d", os.Getpid())
	if _, err := p.cl.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: id, RootfsDisk: fixture.ImageSerial, ScratchDisk: fixture.ScratchSerial}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	st, err := p.cl.Exec(ctx, client.ExecOptions{ContainerID: id, ProcessID: "hello", Args: []string{"echo", "hello"}, Stdout: &out})
	if err != nil || st.GetExitCode() != 0 || out.String() != "hello\n" {
		t.Fatalf("exec: %v %+v %q", err, st, out.String())
	}
	if _, err := p.cl.Shutdown(ctx, &api.ShutdownRequest{GracePeriodNs: int64(time.Second)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			t.Fatalf("agent exit: %v\n%s", p.waitErr, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent still running after Shutdown")
	}
}

// procStatus reads the "Key: N kB" lines of /proc/<pid>/status (KiB).
func procStatus(tb testing.TB, pid int) map[string]uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			out[strings.TrimSuffix(f[0], ":")] = n
		}
	}
	return out
}

// workload is one round of what a busy agent serves: an exec with 64 KiB
// of output, stats and info.
func workload(tb testing.TB, cl *client.Client, id string, i int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	st, err := cl.Exec(ctx, client.ExecOptions{ContainerID: id, ProcessID: "w" + strconv.Itoa(i),
		Args: []string{"sh", "-c", "dd if=/dev/zero bs=1024 count=64 2>/dev/null"}, Stdout: &out, LogName: "bench/" + strconv.Itoa(i)})
	if err != nil || st.GetExitCode() != 0 || out.Len() != 64<<10 {
		tb.Fatalf("exec: %v %+v %d bytes", err, st, out.Len())
	}
	if _, err := cl.Stats(ctx, &api.StatsRequest{ContainerId: id}); err != nil {
		tb.Fatal(err)
	}
	if _, err := cl.Info(ctx, &api.InfoRequest{}); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkAgentRSS runs the built agent twice side by side, with its
// memory tuning (GOGC 50, 8 MiB soft limit) and with Go's defaults, under
// the same workload, and reports both resident set sizes and their ratio.
func BenchmarkAgentRSS(b *testing.B) {
	tuned := startAgent(b)
	untuned := startAgent(b, "GOGC=100", "GOMEMLIMIT=off")
	procs := []*agentProc{tuned, untuned}
	ids := make([]string, len(procs))
	for k, p := range procs {
		ids[k] = fmt.Sprintf("bench%d-%d", k, os.Getpid())
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := p.cl.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: ids[k], RootfsDisk: fixture.ImageSerial, ScratchDisk: fixture.ScratchSerial})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k, p := range procs {
			workload(b, p.cl, ids[k], i)
		}
	}
	b.StopTimer()
	t := procStatus(b, tuned.cmd.Process.Pid)
	u := procStatus(b, untuned.cmd.Process.Pid)
	b.ReportMetric(float64(t["VmRSS"]), "rss-tuned-KiB")
	b.ReportMetric(float64(t["RssAnon"]), "anon-tuned-KiB")
	// The binary's mapped pages: RssShmem here and in the guest, where it
	// lives on the initramfs (tmpfs); RssFile from a disk filesystem.
	b.ReportMetric(float64(t["RssFile"]+t["RssShmem"]), "binary-tuned-KiB")
	b.ReportMetric(float64(t["VmHWM"]), "peak-tuned-KiB")
	b.ReportMetric(float64(u["VmRSS"]), "rss-default-KiB")
	b.ReportMetric(float64(u["VmHWM"]), "peak-default-KiB")
	b.ReportMetric(float64(t["VmRSS"])/float64(u["VmRSS"]), "rss-tuned/default")
}
