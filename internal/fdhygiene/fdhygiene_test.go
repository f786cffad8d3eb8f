//go:build unix

package fdhygiene

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCloseInheritedLeavesGoDescriptors(t *testing.T) {
	own, err := os.Open(os.DevNull) // close-on-exec, as Go opens everything
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	fds := make([]int, 2)
	if err := unix.Pipe(fds); err != nil { // not close-on-exec: "inherited"
		t.Fatal(err)
	}
	keep, err := unix.Dup(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(keep)
	CloseInherited(keep)
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			t.Errorf("inherited fd %d is still open", fd)
		}
	}
	if _, err := unix.FcntlInt(uintptr(keep), unix.F_GETFD, 0); err != nil {
		t.Errorf("kept fd %d was closed", keep)
	}
	if _, err := own.Stat(); err != nil {
		t.Errorf("Go's own file was closed: %v", err)
	}
}
