package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir holds the bind mounts of named namespaces (iproute2's NETNS_RUN_DIR).
const Dir = "/run/netns"

// Self is a path to the network namespace this process started in.
//
// Not /proc/self/ns/net: that follows the main thread, and Go may run a
// goroutine that locks its thread and changes namespace on the main thread;
// when such a goroutine exits locked, the runtime cannot end the main thread
// and parks it, still in the other namespace (runtime.mexit). The handle is
// opened during package initialisation, which runs locked to the main thread
// before any goroutine could move it, and stays open for the process's life.
var Self = openSelf()

var selfHandle *os.File

func openSelf() string {
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return "/proc/self/ns/net"
	}
	selfHandle = f
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd())
}

// Path is where the namespace called name is mounted.
func Path(name string) string { return filepath.Join(Dir, name) }

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || len(name) > 255 {
		return fmt.Errorf("invalid network namespace name %q", name)
	}
	return nil
}

// IsNamespace reports whether path is a network namespace handle (a bind
// mount under Dir, or a /proc/.../ns/net link). A plain file left behind
// by a reboot (when Dir is not on tmpfs) is not one.
func IsNamespace(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type == unix.NSFS_MAGIC, nil
}

// Create makes a new, empty network namespace mounted at Path(name). It
// fails with an error wrapping os.ErrExist if something is already there.
func Create(name string) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	if err := checkMountNamespace(); err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", Dir, err)
	}
	if err := makeShared(Dir); err != nil {
		return "", err
	}
	path := Path(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		orig, err := os.Open(self)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns %s: %w", self, err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		err = unix.Mount(self, path, "none", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind mount %s on %s: %w", self, path, err)
		}
		// Move back rather than let the thread die with the goroutine:
		// the main thread cannot die and would stay in the new namespace
		// (see Self). If moving back fails, it stays locked and is ended.
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("leave new netns: %w", serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		// The bind mount may have succeeded before the failure.
		return "", errors.Join(fmt.Errorf("create netns %s: %w", name, err), Remove(path))
	}
	return path, nil
}

// ErrPrivateMounts: this process has a mount namespace of its own (as
// under `ip netns exec`), so the bind mount naming a new namespace would
// vanish with the process while the namespace lived on unnamed.
var ErrPrivateMounts = errors.New("this process runs in a private mount namespace (for example under `ip netns exec`): a named network namespace created here would disappear with it; enter the network namespace with `nsenter --net=PATH` instead")

// checkMountNamespace refuses to name namespaces from a mount namespace
// other than init's, where the name would not outlive the process.
func checkMountNamespace() error {
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	init, err2 := os.Readlink("/proc/1/ns/mnt")
	if err1 != nil || err2 != nil || self == init {
		return nil // cannot tell (no /proc/1 access): assume fine
	}
	return ErrPrivateMounts
}

// makeShared makes dir a shared mount point, binding it onto itself first
// if it is not a mount point, as `ip netns add` does: a namespace mounted
// later then propagates to mount namespaces copied from this one, and its
// unmount does too, so Remove really frees the namespace.
//
// Two first callers at once (parallel tests, the node creating namespaces
// concurrently) would both find dir no mount point and both bind it,
// stacking one mount on the other. The namespaces still work (the upper
// mount is the lower's peer, or the only one used), but every such race
// leaves a hidden mount behind. So callers take turns on a lock of dir's
// inode: flock(2) locks the inode, the same through the directory and
// through its bind mount on itself, and holds between goroutines of one
// process too, as each opens its own descriptor. `ip netns add` does not
// take it; a race with it stays as harmless as before.
func makeShared(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s to lock it: %w", dir, err)
	}
	defer d.Close() // releases the lock
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s on itself: %w", dir, err)
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

// Remove unmounts and deletes the namespace handle at path. The namespace
// itself, with every interface in it, goes away once no process and no
// open descriptor holds it. A missing path is not an error.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// Do runs fn on an OS thread that has entered the namespace at path.
// Everything fn creates that is bound to a namespace (sockets, tap devices,
// child processes started with os/exec, sysctl files opened under
// /proc/sys/net) belongs to that namespace. fn must not start goroutines
// that expect to be in it.
func Do(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		orig, err := os.Open(self)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns %s: %w", self, err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Still locked: the thread dies with this goroutine.
			errc <- errors.Join(fnErr, fmt.Errorf("leave netns %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Pids lists the processes inside the namespace at path (whose network
// namespace is that one; threads that entered it alone are not listed).
func Pids(path string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return nil, fmt.Errorf("stat netns %s: %w", path, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
			continue // gone, or a kernel thread
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
