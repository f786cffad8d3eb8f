// Package agenttest builds the real environment the agent's tests run in:
// private namespaces, a busybox root filesystem on ext4 disks attached as
// loop devices and found by serial, and a cgroup2 hierarchy. It is for
// tests only (it is not imported by any non-test code).
package agenttest

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"github.com/vk-applevm/vk-applevm/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent"
)

const envInside = "VKAV_AGENT_TEST_NAMESPACES"

// The main goroutine keeps the main thread (see Main).
func init() { runtime.LockOSThread() }

// Main runs the tests (call it from TestMain) in a re-executed copy of the
// test binary with its own mount, UTS and network namespaces: mounts, the
// hostname and network changes stay private and vanish with the process.
// Inside, setup runs first (its cleanup after the tests). Returns the exit
// code.
//
// The test binary also serves as the agent's container process starter
// (agent.MaybeContainerInit), and keeps its main goroutine on the main
// thread as the agent binary does.
func Main(m *testing.M, setup func() (cleanup func(), err error)) int {
	agent.MaybeContainerInit()
	if testenv.SkipPackage("root (mounts, loop devices, namespaces, chroot)") {
		return 0
	}
	if os.Getenv(envInside) == "1" {
		cleanup, err := setup()
		if err != nil {
			fmt.Fprintln(os.Stderr, "test setup:", err)
			return 1
		}
		code := m.Run()
		cleanup()
		return code
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "agent tests need root (mounts, loop devices, namespaces, chroot): run them as root")
		return 1
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), envInside+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Go makes / recursively private in the child when it unshares the
	// mount namespace, so nothing propagates back to the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "re-run tests in private namespaces:", err)
		return 1
	}
	return 0
}

// Fixture is a busybox image disk and a scratch disk, attached and
// findable by serial under SysBlockDir (with DevDir /dev).
type Fixture struct {
	Dir           string
	SysBlockDir   string
	ImageSerial   string
	ScratchSerial string
	loops         []*os.File
}

// Users of the fixture's /etc/passwd and /etc/group.
const (
	AppUID, AppGID = 1000, 1000
	ExtraGID       = 2000 // lists "app" as a member
	ImageMarker    = "/etc/vkav-image"
)

// NewFixture builds the fixture in dir, on a tmpfs mounted there so that
// nothing outlives the tests' mount namespace, even after a crash. Close
// releases the loop devices.
func NewFixture(dir string) (*Fixture, error) {
	if err := needTools(); err != nil {
		return nil, err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		return nil, fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	}()
	root := filepath.Join(dir, "rootfs")
	if err := buildRootfs(root); err != nil {
		return nil, err
	}
	image := filepath.Join(dir, "image.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", root, image, "32M").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4 image: %v: %s", err, out)
	}
	scratch := filepath.Join(dir, "scratch.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", scratch, "256M").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4 scratch: %v: %s", err, out)
	}
	f := &Fixture{Dir: dir, SysBlockDir: filepath.Join(dir, "sys", "block"), ImageSerial: "vkav-rootfs", ScratchSerial: "vkav-scratch"}
	for _, d := range []struct {
		file, serial string
		ro           bool
	}{{image, f.ImageSerial, true}, {scratch, f.ScratchSerial, false}} {
		loop, err := attachLoop(d.file, d.ro)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.loops = append(f.loops, loop)
		entry := filepath.Join(f.SysBlockDir, filepath.Base(loop.Name()))
		if err := os.MkdirAll(entry, 0o755); err != nil {
			f.Close()
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(entry, "serial"), []byte(d.serial+"\n"), 0o644); err != nil {
			f.Close()
			return nil, err
		}
	}
	ok = true
	return f, nil
}

// Close releases the loop devices (they detach once unmounted) and
// unmounts the fixture's tmpfs.
func (f *Fixture) Close() error {
	var errs []error
	for _, l := range f.loops {
		errs = append(errs, l.Close())
	}
	if err := unix.Unmount(f.Dir, unix.MNT_DETACH); err != nil {
		errs = append(errs, fmt.Errorf("unmount %s: %w", f.Dir, err))
	}
	return errors.Join(errs...)
}

// attachLoop attaches file to a free loop device with LO_FLAGS_AUTOCLEAR
// and returns the open device: the kernel detaches it when the last user
// goes, so even a crashed test run leaves no loop device behind.
func attachLoop(file string, readOnly bool) (*os.File, error) {
	flags := os.O_RDWR
	var loFlags uint32 = unix.LO_FLAGS_AUTOCLEAR
	if readOnly {
		flags = os.O_RDONLY
		loFlags |= unix.LO_FLAGS_READ_ONLY
	}
	backing, err := os.OpenFile(file, flags, 0)
	if err != nil {
		return nil, err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/loop-control: %w", err)
	}
	defer ctl.Close()
	// Other processes grab free devices too: retry on a lost race.
	for attempt := 0; attempt < 20; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), flags, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
		cfg.Info.Flags = loFlags
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if err != unix.EBUSY {
			return nil, fmt.Errorf("attach %s to loop%d: %w", file, n, err)
		}
	}
	return nil, fmt.Errorf("attach %s: no free loop device after 20 tries", file)
}

func needTools() error {
	for tool, pkg := range map[string]string{"mkfs.ext4": "e2fsprogs", "ip": "iproute2"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install %s", tool, pkg)
		}
	}
	f, err := elf.Open("/bin/busybox")
	if err != nil {
		return fmt.Errorf("/bin/busybox: %v: apt-get install busybox-static", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("/bin/busybox is dynamically linked; the test rootfs needs the static one: apt-get install busybox-static")
		}
	}
	return nil
}

// applets linked to busybox in the test image.
var applets = []string{"sh", "echo", "cat", "id", "sleep", "pwd", "env", "ls", "true", "false",
	"tty", "stty", "head", "wc", "touch", "mkdir", "readlink", "hostname", "test", "kill", "grep", "dd", "stat", "mount", "uname"}

func buildRootfs(root string) error {
	for _, d := range []string{"bin", "etc", "tmp", "root", "home/app", "usr/bin", "bin/adir"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(root, "home/app"), AppUID, AppGID); err != nil {
		return err
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	for _, a := range applets {
		// Absolute links: resolving them must stay inside the rootfs.
		if err := os.Symlink("/bin/busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":           "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":            "root:x:0:\napp:x:1000:\nextra:x:2000:app,other\nunrelated:x:3000:root\n",
		ImageMarker[1:]:        "from-image\n",
		"usr/bin/not-runnable": "#!/bin/sh\necho never\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Cgroup2Root returns a cgroup of this test process's own to be the
// agent's cgroup root, and enables the controllers the hierarchy offers for
// it. RemoveCgroup2Root removes it.
//
// The hierarchy is the host's, and `go test -p 2 ./...` runs two test
// binaries of the agent at once (agent and cmd/vk-applevm-agent). With the
// hierarchy's root as the agent's, both kept their containers under one
// <root>/vkav: one binary's clean-up removed it while the other was
// between creating it and creating a container's cgroup in it.
func Cgroup2Root(tmp string) (string, error) {
	mount, err := cgroup2Mount(tmp)
	if err != nil {
		return "", err
	}
	avail, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		return "", fmt.Errorf("read the cgroup controllers of %s: %w", mount, err)
	}
	for _, ctl := range strings.Fields(string(avail)) {
		if ctl != "cpu" && ctl != "memory" && ctl != "pids" {
			continue
		}
		if err := os.WriteFile(filepath.Join(mount, "cgroup.subtree_control"), []byte("+"+ctl), 0); err != nil {
			return "", fmt.Errorf("enable the %s controller in %s: %w", ctl, mount, err)
		}
	}
	dir := filepath.Join(mount, fmt.Sprintf("vkav-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create the test cgroup: %w", err)
	}
	return dir, nil
}

// RemoveCgroup2Root removes what Cgroup2Root made and the agent's parent
// cgroup in it (the agent removes each container's own).
func RemoveCgroup2Root(root string) error {
	if err := os.Remove(filepath.Join(root, "vkav")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.Remove(root)
}

// cgroup2Mount returns a cgroup2 mount: an existing one (the whole
// hierarchy on a cgroup2 host, /sys/fs/cgroup/unified on a hybrid one) or
// a fresh mount in a temporary directory (the cgroup2 hierarchy exists on
// every kernel since 4.5 even where controllers are bound to cgroup v1).
func cgroup2Mount(tmp string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		_, after, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(after, "cgroup2 ") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) > 4 {
			return fields[4], nil
		}
	}
	dir := filepath.Join(tmp, "cgroup2")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := unix.Mount("cgroup2", dir, "cgroup2", 0, ""); err != nil {
		return "", fmt.Errorf("mount cgroup2 on %s: %w", dir, err)
	}
	return dir, nil
}
