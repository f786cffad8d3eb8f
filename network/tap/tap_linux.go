package tap

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vk-applevm/vk-applevm/network/netns"
	"golang.org/x/sys/unix"
)

// cloneDevice is the tun/tap clone device (Documentation/networking/tuntap.rst).
const cloneDevice = "/dev/net/tun"

// ErrNotFound is returned by Open for a tap device that does not exist.
var ErrNotFound = errors.New("tap device not found")

// Create makes a persistent tap device called name in the namespace at
// nsPath, owned by uid (who may then attach to it without CAP_NET_ADMIN).
// It fails with an error wrapping os.ErrExist if an interface of that name
// exists: attaching to a tap that a running VM holds would fail with EBUSY,
// and to any other kind of device would be wrong.
func Create(nsPath, name string, uid int) error {
	err := netns.Do(nsPath, func() error {
		if _, err := net.InterfaceByName(name); err == nil {
			return fmt.Errorf("interface %s: %w", name, os.ErrExist)
		}
		f, err := attach(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unix.IoctlSetInt(int(f.Fd()), unix.TUNSETOWNER, uid); err != nil {
			return fmt.Errorf("set owner %d: %w", uid, err)
		}
		// Persistent: the device outlives this descriptor and waits,
		// carrier down, for the VM's hypervisor to attach.
		if err := unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, 1); err != nil {
			return fmt.Errorf("make persistent: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create tap %s in %s: %w", name, nsPath, err)
	}
	return nil
}

// Open attaches to the existing tap device called name in the namespace at
// nsPath and returns a non-blocking descriptor carrying one Ethernet frame
// per read or write (IFF_NO_PI: no packet-information prefix), which Go's
// poller serves, so read deadlines work. Only one descriptor can be attached
// at a time.
func Open(nsPath, name string) (*os.File, error) {
	var f *os.File
	err := netns.Do(nsPath, func() error {
		// TUNSETIFF on a name that does not exist would create a new,
		// non-persistent device instead of failing.
		if _, err := net.InterfaceByName(name); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrNotFound, name, err)
		}
		var err error
		f, err = attach(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open tap %s in %s: %w", name, nsPath, err)
	}
	return f, nil
}

// attach opens the clone device and binds it to tap name (created if
// missing) in the calling thread's namespace.
func attach(name string) (*os.File, error) {
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cloneDevice, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("interface name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}
