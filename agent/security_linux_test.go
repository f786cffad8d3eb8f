package agent_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
)

// startFirst starts the container's first process, its PID 1.
func (e *env) startFirst(t *testing.T, id string, args ...string) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := e.cl.CreateProcess(ctx, &api.CreateProcessRequest{ContainerId: id, ProcessId: "first", Args: args}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.StartProcess(ctx, &api.StartProcessRequest{ContainerId: id, ProcessId: "first"}); err != nil {
		t.Fatal(err)
	}
}

func TestContainerNamespacesAndDefaults(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "ns")
	e.startFirst(t, id, "sleep", "100")
	// An exec'd process joins the first one's namespaces: PID 1 is the
	// container's first process, the hostname the container's; it sees
	// no descriptor but its own, the default capabilities, masked and
	// read-only /proc paths.
	r := e.run(t, id, client.ExecOptions{Args: sh(`tr '\0' ' ' </proc/1/cmdline; echo; hostname; ls /proc/self/fd | tr '\n' ' '; echo;
grep CapEff /proc/self/status; stat -c %F /proc/keys; echo 1 2>/dev/null >/proc/sys/kernel/shm_rmid_forced || echo sys-read-only;
grep '^0::' /proc/self/cgroup; busybox unshare -U true && echo userns-allowed`)})
	if r.err != nil || r.exit.GetExitCode() != 0 {
		t.Fatalf("%v %+v %q", r.err, r.exit, r.stderr)
	}
	want := "sleep 100 \nbox-ns\n0 1 2 3 \nCapEff:\t00000000a80425fb\ncharacter special file\nsys-read-only\n0::/\nuserns-allowed\n"
	if r.stdout != want {
		t.Fatalf("in the container:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestLockedDownContainer(t *testing.T) {
	e := newEnv(t)
	f := false
	t.Run("no new privileges, no capabilities, read-only root, runtime/default seccomp, sysctl", func(t *testing.T) {
		nnp := true
		id := e.createContainer(t, "locked", func(r *api.CreateContainerRequest) {
			r.Security = &api.Security{Capabilities: []string{}, NoNewPrivileges: &nnp, ReadOnlyRoot: true,
				Seccomp: "runtime/default", Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}}
			r.Mounts = []*api.Mount{{Destination: "/scratch", Type: "tmpfs"}}
		})
		r := e.run(t, id, client.ExecOptions{Args: sh(`grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status | tr '\t' ' ';
cat /proc/sys/kernel/shm_rmid_forced; touch /new 2>&1; touch /scratch/ok && echo volume-writable;
busybox unshare -U true 2>&1; busybox mknod /scratch/null c 1 3 2>&1; echo done`)})
		if r.err != nil {
			t.Fatal(r.err)
		}
		want := "CapPrm: 0000000000000000\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 2\n1\n" +
			"touch: /new: Read-only file system\nvolume-writable\nunshare: unshare(0x10000000): Operation not permitted\n" +
			"mknod: /scratch/null: Operation not permitted\ndone\n"
		if r.stdout != want {
			t.Fatalf("in the container:\n%s\nwant:\n%s", r.stdout, want)
		}
	})
	t.Run("non-root gets no_new_privs by default, not with allowPrivilegeEscalation", func(t *testing.T) {
		for _, tc := range []struct {
			nnp  *bool
			want string
		}{{nil, "1"}, {&f, "0"}} {
			id := e.createContainer(t, "nnp", func(r *api.CreateContainerRequest) {
				r.Security = &api.Security{Capabilities: []string{"CAP_CHOWN"}, NoNewPrivileges: tc.nnp}
			})
			r := e.run(t, id, client.ExecOptions{User: "1000", Args: sh(`grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status | tr '\t' ' '`)})
			want := "CapEff: 0000000000000000\nCapBnd: 0000000000000001\nNoNewPrivs: " + tc.want + "\n"
			if r.err != nil || r.stdout != want {
				t.Fatalf("nnp %v: %v %q, want %q", tc.nnp, r.err, r.stdout, want)
			}
		}
	})
}

func TestUnmaskedProcAndFSGroup(t *testing.T) {
	e := newEnv(t)
	g := uint32(3000)
	id := e.createContainer(t, "unmasked", func(r *api.CreateContainerRequest) {
		r.Security = &api.Security{Capabilities: []string{"CAP_CHOWN"}, UnmaskedProc: true, FsGroup: &g}
		r.Mounts = []*api.Mount{
			{Destination: "/cfg", Type: "files", Volume: "cfg", ReadOnly: true, Files: []*api.File{{Path: "a", Content: []byte("x"), Mode: 0o600}}},
			{Destination: "/data", Type: "tmpfs"},
		}
	})
	r := e.run(t, id, client.ExecOptions{User: "1000", Args: sh(`stat -c %F /proc/keys; stat -L -c '%g %a' /cfg/a; stat -c '%g %a' /data; id -G | tr ' ' '\n' | grep -x 3000`)})
	want := "regular empty file\n3000 640\n3000 2777\n3000\n"
	if r.err != nil || r.stdout != want {
		t.Fatalf("%v %q (stderr %q), want %q", r.err, r.stdout, r.stderr, want)
	}
}

func TestSecurityRefusals(t *testing.T) {
	e := newEnv(t)
	for name, sec := range map[string]*api.Security{
		"unknown capability":             {Capabilities: []string{"CAP_WIZARD"}},
		"unsafe sysctl":                  {Sysctls: map[string]string{"vm.swappiness": "10"}},
		"port range wider than the VM's": {Sysctls: map[string]string{"net.ipv4.ip_local_port_range": "1024 65535"}},
		"unknown seccomp":                {Seccomp: "strict"},
	} {
		req := &api.CreateContainerRequest{ContainerId: uniqueID("refused"), RootfsDisk: fixture.ImageSerial, ScratchDisk: fixture.ScratchSerial, Security: sec}
		_, err := e.cl.CreateContainer(ctxT(t), req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		} else if name == "port range wider than the VM's" && !strings.Contains(err.Error(), "share of the pod's ephemeral ports") {
			t.Errorf("%s: %v does not say why", name, err)
		}
	}
}

// TestDeviceCgroup: with CAP_MKNOD (the default set) a root container may
// create device nodes, but open only the default devices.
func TestDeviceCgroup(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "devices")
	r := e.run(t, id, client.ExecOptions{Args: sh(`mknod /tmp/null c 1 3 && echo x >/tmp/null && echo null-ok;
mknod /tmp/kmsg c 1 11 && head -c1 /tmp/kmsg 2>&1; mknod /tmp/loop b 7 0 && head -c1 /tmp/loop 2>&1; true`)})
	want := "null-ok\nhead: /tmp/kmsg: Operation not permitted\nhead: /tmp/loop: Operation not permitted\n"
	if r.err != nil || r.stdout != want {
		t.Fatalf("%v %q (stderr %q), want %q", r.err, r.stdout, r.stderr, want)
	}
}

// TestNamespacesFollowTheFirstProcess: processes started while the
// first runs share its PID namespace; once it has exited, the next one
// starts new namespaces (and is PID 1 there).
func TestNamespacesFollowTheFirstProcess(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "first")
	r := e.run(t, id, client.ExecOptions{Args: sh(`echo $$`)})
	if r.err != nil || r.stdout != "1\n" {
		t.Fatalf("a lone process: %v %q, want PID 1", r.err, r.stdout)
	}
	e.startFirst(t, id, "sleep", "100")
	r = e.run(t, id, client.ExecOptions{Args: sh(`echo $$; tr '\0' ' ' </proc/1/cmdline`)})
	if r.err != nil || r.stdout == "1\nsleep 100 " || !strings.HasSuffix(r.stdout, "\nsleep 100 ") {
		t.Fatalf("next to the first: %v %q", r.err, r.stdout)
	}
}
