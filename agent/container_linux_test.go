package agent_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
)

func TestRecreateGivesFreshWritableLayer(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "restart")
	r := e.run(t, id, client.ExecOptions{Args: sh("echo data > /data.txt && cat /etc/vkav-image")})
	if r.err != nil || r.stdout != "from-image\n" {
		t.Fatalf("first run: %v %q %q", r.err, r.stdout, r.stderr)
	}
	ctx := ctxT(t)
	// Not while a process runs.
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "s", Args: []string{"sleep", "100"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "s"}); err != nil {
		t.Fatal(err)
	}
	req := &api.CreateContainerRequest{ContainerId: id, RootfsDisk: fixture.ImageSerial, ScratchDisk: fixture.ScratchSerial}
	if _, err := e.cl.CreateContainer(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("recreate with a running process: %v, want FailedPrecondition", err)
	}
	if _, err := e.cl.Signal(ctx, &api.SignalRequest{ContainerId: id, Signal: 9, All: true}); err != nil {
		t.Fatal(err)
	}
	w, err := e.cl.Wait(ctx, &api.WaitRequest{ContainerId: id, ProcessId: "s"})
	if err != nil || w.GetExit().GetSignal() != 9 {
		t.Fatalf("wait after signal to all: %v %+v", err, w.GetExit())
	}
	if _, err := e.cl.CreateContainer(ctx, req); err != nil {
		t.Fatal(err)
	}
	r = e.run(t, id, client.ExecOptions{Args: sh("cat /etc/vkav-image; test -e /data.txt && echo kept || echo fresh")})
	if r.err != nil || r.stdout != "from-image\nfresh\n" {
		t.Fatalf("after recreate: %v %q %q %+v", r.err, r.stdout, r.stderr, r.exit)
	}
}

func TestFilesVolumeAndWriteFiles(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "files", func(r *api.CreateContainerRequest) {
		r.Mounts = []*api.Mount{{
			Destination: "/etc/config", Type: "files", Volume: "cfg", ReadOnly: true,
			Files: []*api.File{{Path: "a.conf", Content: []byte("one")}, {Path: "sub/b.conf", Content: []byte("two"), Mode: 0o600}},
		}}
	})
	r := e.run(t, id, client.ExecOptions{Args: sh(`cat /etc/config/a.conf /etc/config/sub/b.conf; echo; readlink /etc/config/a.conf; readlink /etc/config/..data; stat -c %a /etc/config/..data/sub/b.conf; touch /etc/config/new 2>/dev/null || echo read-only`)})
	if r.err != nil {
		t.Fatal(r.err)
	}
	lines := strings.Split(r.stdout, "\n")
	if len(lines) < 5 || lines[0] != "onetwo" || lines[1] != "..data/a.conf" || !regexp.MustCompile(`^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.`).MatchString(lines[2]) || lines[3] != "600" || lines[4] != "read-only" {
		t.Fatalf("volume as seen in the container: %q (stderr %q)", r.stdout, r.stderr)
	}
	if _, err := e.cl.WriteFiles(ctxT(t), &api.WriteFilesRequest{ContainerId: id, Volume: "cfg", Files: []*api.File{{Path: "c.conf", Content: []byte("three")}}}); err != nil {
		t.Fatal(err)
	}
	r = e.run(t, id, client.ExecOptions{Args: sh(`ls /etc/config; cat /etc/config/c.conf; echo; test -e /etc/config/a.conf || echo a-gone; ls -a /etc/config | grep -c '^\.\.[0-9]'`)})
	if r.err != nil || r.stdout != "c.conf\nthree\na-gone\n1\n" {
		t.Fatalf("after WriteFiles: %v %q %q", r.err, r.stdout, r.stderr)
	}
	if _, err := e.cl.WriteFiles(ctxT(t), &api.WriteFilesRequest{ContainerId: id, Volume: "cfg", Files: []*api.File{{Path: "../escape"}}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("path escaping the volume: %v, want InvalidArgument", err)
	}
}

func TestMountsAndSetupFiles(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	if _, err := e.cl.Setup(ctx, &api.SetupRequest{
		Hostname: "guest-host",
		Hosts:    []*api.HostEntry{{Ip: "10.0.0.5", Names: []string{"db", "db.local"}}},
		Dns:      &api.DNS{Nameservers: []string{"10.0.0.10"}, Searches: []string{"svc.local"}, Options: []string{"ndots:5"}},
	}); err != nil {
		t.Fatal(err)
	}
	if h, _ := os.Hostname(); h != "guest-host" {
		t.Fatalf("hostname %q", h)
	}
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "shared.txt"), []byte("shared"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := e.createContainer(t, "mounts", func(r *api.CreateContainerRequest) {
		r.Hostname = ""
		r.Mounts = []*api.Mount{
			{Destination: "/scratch", Type: "tmpfs", SizeBytes: 1 << 20},
			{Destination: "/host", Type: "bind", Source: hostDir, ReadOnly: true},
		}
	})
	script := `cat /host/shared.txt; echo
touch /host/x 2>/dev/null || echo host-ro
echo hi > /scratch/f && cat /scratch/f
grep db /etc/hosts
cat /etc/resolv.conf /etc/hostname
test -c /dev/null && test -c /dev/urandom && test -L /dev/ptmx && echo dev-ok
test -e /proc/self/status && echo proc-ok
touch /sys/x 2>/dev/null || echo sys-ro`
	r := e.run(t, id, client.ExecOptions{Args: sh(script)})
	want := "shared\nhost-ro\nhi\n10.0.0.5\tdb db.local\nnameserver 10.0.0.10\nsearch svc.local\noptions ndots:5\nguest-host\ndev-ok\nproc-ok\nsys-ro\n"
	if r.err != nil || r.stdout != want {
		t.Fatalf("got %v\n%s\nstderr %q\nwant\n%s", r.err, r.stdout, r.stderr, want)
	}
	// A later Setup reaches running containers' files (written in place).
	if _, err := e.cl.Setup(ctx, &api.SetupRequest{Dns: &api.DNS{Nameservers: []string{"10.0.0.11"}}}); err != nil {
		t.Fatal(err)
	}
	r = e.run(t, id, client.ExecOptions{Args: []string{"cat", "/etc/resolv.conf"}})
	if r.stdout != "nameserver 10.0.0.11\n" {
		t.Fatalf("resolv.conf after second Setup: %q", r.stdout)
	}
}

func TestCreateContainerErrors(t *testing.T) {
	e := newEnv(t, func(c *agent.Config) { c.DiskWait = 200 * time.Millisecond })
	ctx := ctxT(t)
	for _, tc := range []struct {
		req  *api.CreateContainerRequest
		code codes.Code
	}{
		{&api.CreateContainerRequest{ContainerId: "../x", RootfsDisk: "a", ScratchDisk: "b"}, codes.InvalidArgument},
		{&api.CreateContainerRequest{ContainerId: uniqueID("nodisk"), RootfsDisk: "no-such-serial", ScratchDisk: fixture.ScratchSerial}, codes.NotFound},
		{&api.CreateContainerRequest{ContainerId: uniqueID("badmount"), RootfsDisk: fixture.ImageSerial, ScratchDisk: fixture.ScratchSerial,
			Mounts: []*api.Mount{{Destination: "relative", Type: "tmpfs"}}}, codes.InvalidArgument},
	} {
		if _, err := e.cl.CreateContainer(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.req.GetContainerId(), err, tc.code)
		}
	}
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: "missing", ProcessId: "p", Args: []string{"true"}}); status.Code(err) != codes.NotFound {
		t.Fatalf("process in a missing container: %v", err)
	}
	if _, err := client.ExitCode(client.MapProcessError(status.Error(codes.NotFound, `container "missing": not found`))); err {
		t.Fatal("a missing container mapped to a missing command")
	}
}
