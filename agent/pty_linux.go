package agent

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openPTY allocates a pseudo-terminal on master, an opened pty multiplexer
// (a ptmx node), and returns both ends; it closes master on failure. The
// slave comes from TIOCGPTPEER (Linux 4.13), so no /dev/pts path is looked
// up: opening the container's own devpts instance (<rootfs>/dev/pts/ptmx)
// makes the terminal visible inside the container as /dev/pts/N, where
// ttyname(3) finds it.
func openPTY(master *os.File) (_, slave *os.File, err error) {
	rc, err := master.SyscallConn()
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	var sfd int
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr != nil {
			ioErr = fmt.Errorf("unlock pty: %w", ioErr)
			return
		}
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
		if errno != 0 {
			ioErr = fmt.Errorf("open pty peer: %w", errno)
			return
		}
		sfd = int(r)
	})
	if err == nil {
		err = ioErr
	}
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, os.NewFile(uintptr(sfd), "pty-slave"), nil
}

// setWinsize sets the terminal size; the kernel sends SIGWINCH to the
// terminal's foreground process group.
func setWinsize(tty *os.File, rows, cols uint32) error {
	rc, err := tty.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	})
	if err != nil {
		return err
	}
	if ioErr != nil {
		return fmt.Errorf("set terminal size %dx%d: %w", cols, rows, ioErr)
	}
	return nil
}
