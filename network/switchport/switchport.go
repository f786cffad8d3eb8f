// Package switchport plugs a VM's network interface into the node's
// user-space switch (network/vswitch). It is small on purpose: the per-VM
// shim imports it.
//
// The cable is a pair of connected datagram unix sockets, one Ethernet frame
// per datagram: QEMU takes one end as a dgram netdev (local.type=fd), vz as a
// VZFileHandleNetworkDeviceAttachment, so both hypervisors use the same code
// path. The shim owns the pair for the VM's whole life. It hands the other
// end to the switch over the switch's ports socket (SCM_RIGHTS) and keeps
// the connection open: the switch unplugs the port when the connection
// closes, and the shim hands the same end over again when the switch comes
// back after a restart, so the hypervisor never sees its socket change.
//
// Wire format on the ports socket (SOCK_STREAM): the shim sends one line of
// JSON, {"id":"<vm id>"}, with the descriptor attached; the switch answers
// one line, {"error":""} when the port is plugged.
package switchport

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Socket buffer sizes of both ends. vz requires a receive buffer of at
// least four times the send buffer on a file-handle attachment's socket
// (vfkit sets 1 MiB / 4 MiB, as here; mac-pitfalls.md).
const (
	SendBuffer    = 1 << 20
	ReceiveBuffer = 4 << 20
)

// Pair returns a connected pair of datagram sockets: vmEnd for the
// hypervisor, switchEnd for the switch.
func Pair() (vmEnd, switchEnd *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("network cable: socketpair: %w", err)
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
		// Best effort: the kernel caps them at net.core.*mem_max.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, SendBuffer)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, ReceiveBuffer)
	}
	return os.NewFile(uintptr(fds[0]), "nic-vm"), os.NewFile(uintptr(fds[1]), "nic-switch"), nil
}

type hello struct {
	ID string `json:"id"`
}

type answer struct {
	Error string `json:"error"`
}

// maxHello bounds the first line.
const maxHello = 4 << 10

// PlugOnce hands switchEnd to the switch at sock once and returns the
// connection, which keeps the port plugged while it stays open.
func PlugOnce(ctx context.Context, sock, id string, switchEnd *os.File) (*net.UnixConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.SetDeadline(dl)
	} else {
		_ = uc.SetDeadline(time.Now().Add(10 * time.Second))
	}
	msg, _ := json.Marshal(hello{ID: id})
	msg = append(msg, '\n')
	if _, _, err := uc.WriteMsgUnix(msg, unix.UnixRights(int(switchEnd.Fd())), nil); err != nil {
		uc.Close()
		return nil, fmt.Errorf("hand the NIC of %s to the switch: %w", id, err)
	}
	line, err := bufio.NewReaderSize(uc, maxHello).ReadSlice('\n')
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("plug the NIC of %s: read the switch's answer: %w", id, err)
	}
	var a answer
	if err := json.Unmarshal(line, &a); err != nil || a.Error != "" {
		uc.Close()
		if err == nil {
			err = errors.New(a.Error)
		}
		return nil, fmt.Errorf("plug the NIC of %s: %w", id, err)
	}
	_ = uc.SetDeadline(time.Time{})
	return uc, nil
}

// Plug keeps switchEnd plugged into the switch at sock until ctx ends:
// whenever the connection to the switch ends (the switch restarted), it
// plugs it again, retrying with backoff while the switch is away. plugged,
// if set, is called after every successful plug.
func Plug(ctx context.Context, sock, id string, switchEnd *os.File, log *slog.Logger, plugged func()) {
	backoff := 20 * time.Millisecond
	warned := false
	for ctx.Err() == nil {
		c, err := PlugOnce(ctx, sock, id, switchEnd)
		if err != nil {
			if !warned {
				log.Warn("cannot plug the VM's network into the switch; retrying", "err", err)
				warned = true
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		if warned {
			log.Info("VM network plugged into the switch again")
		}
		warned, backoff = false, 20*time.Millisecond
		if plugged != nil {
			plugged()
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		var b [1]byte
		_, _ = c.Read(b[:]) // blocks until the switch goes away or ctx ends
		stop()
		c.Close()
	}
}

// Accept reads a plug request from c: the VM id and its end of the cable.
func Accept(c *net.UnixConn) (id string, f *os.File, err error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, maxHello)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return "", nil, fmt.Errorf("read plug request: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	var fds []int
	if err == nil {
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return "", nil, fmt.Errorf("plug request carries %d descriptors, want 1", len(fds))
	}
	f = os.NewFile(uintptr(fds[0]), "nic")
	var h hello
	if n == 0 || buf[n-1] != '\n' || json.Unmarshal(buf[:n-1], &h) != nil || h.ID == "" {
		f.Close()
		return "", nil, errors.New("plug request: want one line of JSON with the VM id")
	}
	if t, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_DGRAM {
		f.Close()
		return "", nil, fmt.Errorf("plug request of %s: the descriptor is not a datagram socket", h.ID)
	}
	return h.ID, f, nil
}

// Answer tells the plugging shim the outcome.
func Answer(c net.Conn, err error) error {
	a := answer{}
	if err != nil {
		a.Error = err.Error()
	}
	msg, _ := json.Marshal(a)
	_, werr := c.Write(append(msg, '\n'))
	return werr
}
