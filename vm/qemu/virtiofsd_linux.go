package qemu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/internal/filetail"
	"github.com/vk-applevm/vk-applevm/vm"
)

// virtiofsdBinary returns the virtiofsd to run: Options.Virtiofsd, else
// the first of VirtiofsdCandidates that exists.
func (d *Driver) virtiofsdBinary() (string, error) {
	candidates := VirtiofsdCandidates
	if d.opts.Virtiofsd != "" {
		candidates = []string{d.opts.Virtiofsd}
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("find virtiofsd for shared directories (%s): none of %s is an executable file",
		VirtiofsdHint, strings.Join(candidates, ", "))
}

// virtiofsd is one running virtiofsd, serving one share of a machine.
type virtiofsd struct {
	share   vm.Share
	logPath string // its stdout and stderr
	cmd     *exec.Cmd
	logger  *slog.Logger
	done    chan struct{}
	err     error // why it exited; set before done closes
}

// startVirtiofsd starts the virtiofsd of share i of a machine whose
// private directory is dir. Like QEMU it is started from a goroutine that
// keeps its OS thread locked for the process's whole life, so Pdeathsig
// (bound to the forking thread, go.dev/issue/27505) kills it with the
// shim. For a read-only share that thread first moves into a mount
// namespace of its own, where the directory is bind-mounted read-only onto
// itself: virtiofsd inherits the namespace and its sandbox's bind of the
// source keeps the read-only flag, so the host refuses writes even from a
// guest that remounts the share read-write. The namespace ends with the
// thread and virtiofsd; nothing is left mounted on the host. The thread
// also carries the seccomp filter that virtiofsd inherits
// (refuseSetuidOnThisThread).
func startVirtiofsd(bin, dir string, i int, share vm.Share, log *slog.Logger) (*virtiofsd, error) {
	src, err := filepath.Abs(share.HostPath)
	if err != nil {
		return nil, fmt.Errorf("share %s: %w", share.Tag, err)
	}
	if st, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("share %s: %w", share.Tag, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("share %s: %s is not a directory", share.Tag, src)
	}
	share.HostPath = src
	sock := fsSocket(dir, i)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("share %s: listen for QEMU: %w", share.Tag, err)
	}
	// The socket file must outlive our listener: QEMU connects to it after
	// virtiofsd has taken the listening fd.
	l.SetUnlinkOnClose(false)
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("share %s: socket fd: %w", share.Tag, err)
	}
	defer lf.Close() // virtiofsd holds its own copy
	logPath := virtiofsdLog(dir, i)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("share %s: open virtiofsd log: %w", share.Tag, err)
	}
	defer logFile.Close()

	cmd := exec.Command(bin, VirtiofsdArgs(share)...)
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = logFile, logFile, []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	v := &virtiofsd{share: share, logPath: logPath, cmd: cmd, logger: log, done: make(chan struct{})}
	started := make(chan error, 1)
	onOwnThread(func() {
		if share.ReadOnly {
			if err := readOnlyView(src); err != nil {
				started <- fmt.Errorf("share %s: %w", share.Tag, err)
				return
			}
		}
		if err := refuseSetuidOnThisThread(); err != nil {
			started <- fmt.Errorf("share %s: %w", share.Tag, err)
			return
		}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("share %s: run %s: %w", share.Tag, bin, err)
			return
		}
		started <- nil
		werr := cmd.Wait()
		if werr == nil {
			werr = errors.New("exited")
		}
		v.err = fmt.Errorf("virtiofsd of share %s: %w%s", share.Tag, werr, fileTail(logPath))
		close(v.done)
	})
	if err := <-started; err != nil {
		return nil, err
	}
	log.Debug("virtiofsd started", "share", share.Tag, "source", src, "readOnly", share.ReadOnly, "pid", cmd.Process.Pid)
	return v, nil
}

// onOwnThread runs fn in a goroutine locked to an OS thread for good (the
// thread ends with fn), never the process's main thread: what fn changes
// about its thread (the mount namespace) must not show in /proc/self,
// which describes the main thread, and the main thread cannot end.
func onOwnThread(fn func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			fn()
			return
		}
		// Holding the main thread, a new goroutine gets another one.
		locked := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(locked)
			fn()
		}()
		<-locked
		runtime.UnlockOSThread()
	}()
}

// readOnlyView gives the calling (locked) thread a private mount namespace
// in which dir, and everything mounted under it, is read-only.
func readOnlyView(dir string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("read-only view of %s: unshare mount namespace: %w", dir, err)
	}
	// Private first, so the bind below never propagates to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("read-only view of %s: make mounts private: %w", dir, err)
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("read-only view of %s: bind: %w", dir, err)
	}
	// mount_setattr (Linux 5.12) sets read-only on the whole tree at once;
	// a bind remount would leave submounts writable.
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(unix.AT_FDCWD, dir, unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("read-only view of %s: mount_setattr: %w", dir, err)
	}
	return nil
}

// stop kills virtiofsd if it still runs and waits for it. It normally
// exits by itself when QEMU closes the vhost-user connection.
func (v *virtiofsd) stop() {
	select {
	case <-v.done:
		return
	default:
	}
	if err := v.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		v.logger.Warn("kill virtiofsd", "share", v.share.Tag, "err", err)
	}
	<-v.done
}

// fileTail returns the end of a log file for error messages.
func fileTail(path string) string {
	b, err := filetail.Last(path, 1024)
	if err != nil || len(b) == 0 {
		return ""
	}
	return ": " + strings.TrimSpace(string(b))
}
