package qemu

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vk-applevm/vk-applevm/vm"
)

// needVirtiofsd fails the test when virtiofsd is not installed.
func needVirtiofsd(t testing.TB) string {
	t.Helper()
	testenv.NeedsRoot(t, "virtiofsd's mount namespace")
	bin, err := New(Options{Logger: testLogger}).virtiofsdBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestVirtiofsdParsesEscapedSource runs the real virtiofsd on a source
// path holding a comma: it must report that very path missing, not a
// truncated one.
func TestVirtiofsdParsesEscapedSource(t *testing.T) {
	bin := needVirtiofsd(t)
	src := filepath.Join(t.TempDir(), `a,b\c`, "missing")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(shortDir(t), "fs.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(bin, VirtiofsdArgs(vm.Share{Tag: "t", HostPath: src})...)
	cmd.ExtraFiles = []*os.File{lf}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("virtiofsd accepted a missing source:\n%s", out)
	}
	if want := `failed to stat source ("` + src + `")`; !strings.Contains(string(out), want) {
		t.Fatalf("virtiofsd said:\n%s\nwant it to contain %s", out, want)
	}
}

// TestReadOnlyShareIsReadOnlyOnTheHost checks the view a read-only share's
// virtiofsd gets: its source mounted read-only in its own mount namespace,
// while the host's namespace is untouched.
func TestReadOnlyShareIsReadOnlyOnTheHost(t *testing.T) {
	bin := needVirtiofsd(t)
	dir, src := shortDir(t), t.TempDir()
	v, err := startVirtiofsd(bin, dir, 0, vm.Share{Tag: "ro", HostPath: src, ReadOnly: true}, testLogger)
	if err != nil {
		t.Fatal(err)
	}
	defer v.stop()
	opts, ok := mountOptions(t, fmt.Sprintf("/proc/%d/mountinfo", v.cmd.Process.Pid), src)
	if !ok || !strings.Contains(","+opts+",", ",ro,") {
		t.Fatalf("virtiofsd's mount of %s: found %v, options %q; want read-only", src, ok, opts)
	}
	if opts, ok := mountOptions(t, "/proc/self/mountinfo", src); ok {
		t.Fatalf("the read-only view leaked into the host's namespace (options %q)", opts)
	}
	if err := os.WriteFile(filepath.Join(src, "host-can-write"), nil, 0o644); err != nil {
		t.Fatalf("the host lost write access to the directory: %v", err)
	}

	// A writable share gets no view of its own: virtiofsd shares our mounts.
	w, err := startVirtiofsd(bin, dir, 1, vm.Share{Tag: "rw", HostPath: t.TempDir()}, testLogger)
	if err != nil {
		t.Fatal(err)
	}
	defer w.stop()
	self, _ := os.Readlink("/proc/self/ns/mnt")
	theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", w.cmd.Process.Pid))
	if self == "" || self != theirs {
		t.Fatalf("writable share's virtiofsd runs in mount namespace %q, want ours %q", theirs, self)
	}
}

// mountOptions returns the per-mount options of the mount at path in a
// mountinfo file.
func mountOptions(t *testing.T, mountinfo, path string) (string, bool) {
	t.Helper()
	f, err := os.Open(mountinfo)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts, found := "", false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 5 && fields[4] == path {
			opts, found = fields[5], true // the last one is on top
		}
	}
	return opts, found
}

func TestMissingVirtiofsdIsAClearError(t *testing.T) {
	d := New(Options{Virtiofsd: "/nonexistent/virtiofsd", Logger: testLogger})
	err := d.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), VirtiofsdHint) {
		t.Fatalf("Check without virtiofsd: %v, want an error saying %q", err, VirtiofsdHint)
	}
	spec := baseSpec()
	spec.Shares = []vm.Share{{Tag: "s", HostPath: t.TempDir()}}
	spec.ConsoleLog = filepath.Join(t.TempDir(), "console.log")
	_, err = d.Start(context.Background(), spec, shortDir(t))
	if err == nil || !strings.Contains(err.Error(), VirtiofsdHint) {
		t.Fatalf("Start with a share and no virtiofsd: %v, want an error saying %q", err, VirtiofsdHint)
	}
}

func TestShareMustBeADirectory(t *testing.T) {
	needVirtiofsd(t)
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	spec := baseSpec()
	spec.Shares = []vm.Share{{Tag: "s", HostPath: file}}
	_, err := testDriver(t).Start(context.Background(), spec, shortDir(t))
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Start with a file as share: %v", err)
	}
}

// TestShareBootsAndEndsWithTheMachine boots the floor init with a
// writable and a read-only share: QEMU accepts the vhost-user devices, the
// guest powers off on the power button, and both virtiofsds are gone after.
func TestShareBootsAndEndsWithTheMachine(t *testing.T) {
	t.Parallel()
	needVirtiofsd(t)
	b := floorBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	spec := floorSpec(t, b, "wait")
	spec.Shares = []vm.Share{{Tag: "rw", HostPath: t.TempDir()}, {Tag: "ro", HostPath: t.TempDir(), ReadOnly: true}}
	m := startVM(ctx, t, testDriver(t), spec)
	fsds := m.(*machine).virtiofsds
	r, _ := openPort(ctx, t, m)
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("agent port: %q, %v", line, err)
	}
	for _, v := range fsds {
		if !alive(v.cmd.Process.Pid) {
			t.Fatalf("virtiofsd of %s is not running while the machine is: %v", v.share.Tag, v.err)
		}
	}
	if err := m.RequestStop(ctx); err != nil {
		t.Fatal(err)
	}
	waitDone(ctx, t, m)
	if err := m.Err(); err != nil {
		t.Fatalf("power-off with shares ended with %v, want nil", err)
	}
	for _, v := range fsds {
		select {
		case <-v.done:
		default:
			t.Fatalf("virtiofsd of %s outlived its machine", v.share.Tag)
		}
	}
}

// TestVirtiofsdDeathKillsTheMachine: a guest whose share lost its server
// would hang on it; the machine is stopped with an error naming the share.
func TestVirtiofsdDeathKillsTheMachine(t *testing.T) {
	t.Parallel()
	needVirtiofsd(t)
	b := floorBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	spec := floorSpec(t, b, "wait")
	spec.Shares = []vm.Share{{Tag: "doomed", HostPath: t.TempDir()}}
	m := startVM(ctx, t, testDriver(t), spec)
	r, _ := openPort(ctx, t, m)
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("agent port: %q, %v", line, err)
	}
	if err := syscall.Kill(m.(*machine).virtiofsds[0].cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(ctx, t, m)
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "virtiofsd of share doomed") || errors.Is(err, ErrKilled) {
		t.Fatalf("Err after virtiofsd died = %v, want the virtiofsd failure", err)
	}
}

// shortDir is a private directory with a short path (unix socket paths
// are limited to 108 bytes; t.TempDir's can be longer).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vkq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
