package agent

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/security"
)

// runFilter evaluates a compiled filter on one system call, as the kernel
// would (struct seccomp_data: nr, arch, instruction pointer, six args).
func runFilter(t *testing.T, prog []unix.SockFilter, auditArch uint32, nr int, args ...uint64) uint32 {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(prog))
	for i, f := range prog {
		raw[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64)
	binary.NativeEndian.PutUint32(data[0:], uint32(nr))
	binary.NativeEndian.PutUint32(data[4:], auditArch)
	for i, a := range args {
		binary.NativeEndian.PutUint64(data[16+8*i:], a)
	}
	// The kernel loads 32-bit words in host order, x/net/bpf's VM in
	// network order: present each word so that it reads the same.
	for i := 0; i < len(data); i += 4 {
		binary.BigEndian.PutUint32(data[i:], binary.NativeEndian.Uint32(data[i:]))
	}
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
)

func TestCompileRuntimeDefault(t *testing.T) {
	native, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	nr := func(name string) int {
		n, ok := native.SyscallNames[name]
		if !ok {
			t.Fatalf("no syscall %s on %s", name, native.Name)
		}
		return n
	}
	prog, err := compileSeccomp(seccompRuntimeDefault, nil, security.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("runtime/default: %d instructions", len(prog))
	a := uint32(native.ID)
	for _, tc := range []struct {
		name string
		nr   int
		args []uint64
		want uint32
	}{
		{"read", nr("read"), nil, retAllow},
		{"execve", nr("execve"), nil, retAllow},
		{"keyctl", nr("keyctl"), nil, retEPERM},
		{"unshare", nr("unshare"), []uint64{unix.CLONE_NEWUSER}, retEPERM},
		{"mount", nr("mount"), nil, retEPERM},
		{"init_module", nr("init_module"), nil, retEPERM},
		{"clone of a thread", nr("clone"), []uint64{unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND}, retAllow},
		{"clone of a user namespace", nr("clone"), []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, retEPERM},
		{"clone3 (callers fall back to clone)", nr("clone3"), nil, retENOSYS},
		{"socket AF_INET", nr("socket"), []uint64{unix.AF_INET}, retAllow},
		{"socket AF_VSOCK", nr("socket"), []uint64{unix.AF_VSOCK}, retEPERM},
		{"personality(0)", nr("personality"), []uint64{0}, retAllow},
		{"personality(other)", nr("personality"), []uint64{0x0400000}, retEPERM},
	} {
		if got := runFilter(t, prog, a, tc.nr, tc.args...); got != tc.want {
			t.Errorf("%s: %#x, want %#x", tc.name, got, tc.want)
		}
	}
	// Another architecture's calls (i386 on x86-64) get the default action.
	if got := runFilter(t, prog, 0x40000003, 0); got != retEPERM {
		t.Errorf("foreign architecture: %#x, want EPERM", got)
	}
	// With CAP_SYS_ADMIN the profile allows what that capability governs.
	withAdmin, err := compileSeccomp(seccompRuntimeDefault, nil, append([]string{"CAP_SYS_ADMIN"}, security.DefaultCapabilities...))
	if err != nil {
		t.Fatal(err)
	}
	if got := runFilter(t, withAdmin, a, nr("unshare"), unix.CLONE_NEWUSER); got != retAllow {
		t.Errorf("unshare with CAP_SYS_ADMIN: %#x, want allow", got)
	}
}

func TestCompileLocalhostAndUnconfined(t *testing.T) {
	for _, mode := range []string{"", seccompUnconfined} {
		if prog, err := compileSeccomp(mode, nil, nil); err != nil || prog != nil {
			t.Errorf("%q: %v %d instructions, want no filter", mode, err, len(prog))
		}
	}
	native, _ := arch.GetInfo("")
	prog, err := compileSeccomp(seccompLocalhost, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
		{"names":["mkdir","mkdirat","no_such_call"],"action":"SCMP_ACT_ERRNO"},
		{"names":["chmod"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := uint32(native.ID)
	if got := runFilter(t, prog, a, native.SyscallNames["mkdirat"]); got != retEPERM {
		t.Errorf("mkdirat: %#x", got)
	}
	if got := runFilter(t, prog, a, native.SyscallNames["chmod"]); got != unix.SECCOMP_RET_ERRNO|13 && native.Name == "x86_64" {
		t.Errorf("chmod: %#x", got)
	}
	if got := runFilter(t, prog, a, native.SyscallNames["read"]); got != retAllow {
		t.Errorf("read: %#x", got)
	}
	for _, bad := range []struct{ json, want string }{
		{`{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":13,"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}`, "only EPERM"},
		{`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":6,"valueTwo":2,"op":"SCMP_CMP_MASKED_EQ"}]}]}`, "MASKED_EQ"},
		{`{"defaultAction":"SCMP_ACT_NOTIFY","syscalls":[]}`, "not supported"},
		{`not json`, "seccomp profile"},
	} {
		_, err := compileSeccomp(seccompLocalhost, []byte(bad.json), nil)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: err %v, want %q", bad.json, err, bad.want)
		}
	}
}
