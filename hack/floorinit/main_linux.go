package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	modulesDir  = "/lib/vkav/modules"
	modulesList = "/lib/vkav/modules.list"
	// portModule ends the port prefix of modules.list (guest.PortModule).
	portModule = "virtio_console.ko"
	portName   = "vkav.agent" // vm.AgentPort
)

func main() {
	if err := run(os.Getenv("vkavfloor")); err != nil {
		fmt.Fprintf(os.Stderr, "floorinit: %v\n", err)
	}
	powerOff()
}

func run(mode string) error {
	if err := mountBasics(); err != nil {
		return err
	}
	if err := loadModules(mode != ""); err != nil {
		return err
	}
	port, err := openPort(portName, 10*time.Second)
	if err != nil {
		return err
	}
	defer port.Close()
	powerKey := make(chan string, 1)
	if mode == "wait" {
		// Listen before "ready": a press before the open would be lost.
		events, _ := filepath.Glob("/dev/input/event*")
		for _, ev := range events {
			if f, err := os.Open(ev); err == nil {
				go watchPowerKey(f, powerKey)
			}
		}
	}
	if _, err := port.WriteString("ready\n"); err != nil {
		return fmt.Errorf("write ready: %w", err)
	}
	switch mode {
	case "":
		return nil
	case "serials":
		return reportSerials(port)
	case "wait":
		return waitForPowerOff(port, powerKey)
	case "net":
		return sendOverNetwork(port, os.Getenv("vkavnet"))
	default:
		return fmt.Errorf("unknown vkavfloor mode %q", mode)
	}
}

func mountBasics() error {
	mounts := []struct{ fstype, target string }{
		{"devtmpfs", "/dev"}, {"proc", "/proc"}, {"sysfs", "/sys"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.target, err)
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// loadModules loads modules.list in order: the port prefix, or all of it.
func loadModules(all bool) error {
	data, err := os.ReadFile(modulesList)
	if err != nil {
		return fmt.Errorf("read module list: %w", err)
	}
	for _, name := range strings.Fields(string(data)) {
		if err := loadModule(filepath.Join(modulesDir, name)); err != nil {
			return err
		}
		if name == portModule && !all {
			return nil
		}
	}
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}

// openPort finds the virtio console port by name; the device appears
// asynchronously after virtio_console binds, so poll.
func openPort(name string, timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, p := range names {
			if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(p))
				if f, err := os.OpenFile(dev, os.O_RDWR, 0); err == nil {
					return f, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("virtio port %q did not appear within %s", name, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func reportSerials(port *os.File) error {
	serials, _ := filepath.Glob("/sys/block/*/serial")
	var b strings.Builder
	for _, p := range serials {
		s, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		fmt.Fprintf(&b, "serial %s %s\n", filepath.Base(filepath.Dir(p)), strings.TrimSpace(string(s)))
	}
	macs, _ := filepath.Glob("/sys/class/net/*/address")
	for _, p := range macs {
		if iface := filepath.Base(filepath.Dir(p)); iface != "lo" {
			a, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "mac %s %s\n", iface, strings.TrimSpace(string(a)))
		}
	}
	b.WriteString("done\n")
	_, err := port.WriteString(b.String())
	return err
}

// waitForPowerOff returns on "poweroff\n" from the host or KEY_POWER from
// any input device (the ACPI power button that system_powerdown presses).
func waitForPowerOff(port *os.File, done chan string) error {
	go func() {
		for {
			sc := bufio.NewScanner(port)
			for sc.Scan() {
				if sc.Text() == "poweroff" {
					select {
					case done <- "host asked":
					default:
					}
					return
				}
			}
			// EOF: virtio_console reads 0 while the host end is closed
			// (the host read "ready" and hung up, or a restored machine's
			// port is not yet reconnected). The next host may still ask.
			if err := waitHostOpen(port); err != nil {
				fmt.Fprintf(os.Stderr, "floorinit: %v\n", err)
				return
			}
		}
	}()
	why := <-done
	fmt.Fprintf(os.Stderr, "floorinit: powering off (%s)\n", why)
	return nil
}

// waitHostOpen returns once poll(2) stops reporting POLLHUP on the port:
// the driver wakes no poller when the host end opens, so look every 20 ms.
// agent/transport's VirtioPort does the same; the floor links none of the
// agent's packages, whose inits would count in the floor it measures.
func waitHostOpen(port *os.File) error {
	rc, err := port.SyscallConn()
	if err != nil {
		return fmt.Errorf("wait for the host end of the port: %w", err)
	}
	for {
		var hup bool
		var perr error
		if err := rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, perr = unix.Poll(fds, 0); perr == nil {
				hup = fds[0].Revents&unix.POLLHUP != 0
			}
		}); err != nil {
			return fmt.Errorf("wait for the host end of the port: %w", err)
		}
		if perr != nil && perr != unix.EINTR {
			return fmt.Errorf("poll the port: %w", perr)
		}
		if perr == nil && !hup {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watchPowerKey reads struct input_event (24 bytes on 64-bit: timeval,
// u16 type, u16 code, s32 value; include/uapi/linux/input.h).
func watchPowerKey(f *os.File, done chan<- string) {
	defer f.Close()
	const evKey, keyPower = 1, 116 // EV_KEY, KEY_POWER (input-event-codes.h)
	buf := make([]byte, 24)
	for {
		if _, err := f.Read(buf); err != nil {
			return
		}
		typ := uint16(buf[16]) | uint16(buf[17])<<8
		code := uint16(buf[18]) | uint16(buf[19])<<8
		if typ == evKey && code == keyPower && buf[20] == 1 {
			select {
			case done <- "power button":
			default:
			}
			return
		}
	}
}

func powerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "floorinit: power off: %v\n", err)
	}
	// PID 1 must not exit (the kernel would panic); wait for the end.
	select {}
}
