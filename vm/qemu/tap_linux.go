package qemu

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// openTap attaches to the existing tap device name inside the network
// namespace at netns ("" = ours) and returns its queue fd for QEMU
// (-netdev tap,fd=N). The open happens on a locked thread switched into
// the namespace; a tun fd stays bound to its device wherever it is used.
func openTap(netns, name string, vnetHdr bool) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, restored, err := openTapIn(netns, name, vnetHdr)
		if restored {
			runtime.UnlockOSThread()
		} // else the thread is still in the other namespace: it dies with this goroutine
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

func openTapIn(netns, name string, vnetHdr bool) (f *os.File, restored bool, err error) {
	where := "the shim's namespace"
	if netns != "" {
		where = netns
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return nil, true, fmt.Errorf("open tap %s: save network namespace: %w", name, err)
		}
		defer orig.Close()
		target, err := os.Open(netns)
		if err != nil {
			return nil, true, fmt.Errorf("open tap %s: open network namespace: %w", name, err)
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			return nil, true, fmt.Errorf("open tap %s: enter %s: %w", name, netns, err)
		}
		defer func() {
			restored = unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil
		}()
	}
	// TUNSETIFF on a missing name would create a transient tap that
	// nothing routes to; the network package creates taps up front.
	if _, err := net.InterfaceByName(name); err != nil {
		return nil, true, fmt.Errorf("open tap %s in %s: %w", name, where, err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, true, fmt.Errorf("open tap %s: /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, true, fmt.Errorf("open tap %s: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR // QEMU sets the header size itself (vnet_hdr=on)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, true, fmt.Errorf("open tap %s in %s: TUNSETIFF: %w", name, where, err)
	}
	return os.NewFile(uintptr(fd), "tap-"+name), true, nil
}
