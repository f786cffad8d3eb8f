package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The device cgroup: a root container keeps CAP_MKNOD (containerd's
// default set), so without it it could create a node for the VM's disks or
// the agent's console ports and open it. As runc does on cgroup v2, an
// eBPF program on the container's cgroup allows creating any node but
// reading and writing only the devices of containerd's and moby's default
// list.

// allowedDevices are the character devices a container may open:
// null, zero, full, random, urandom, tty, console, ptmx, the pts
// terminals (any minor: -1) and /dev/net/tun.
var allowedDevices = [][2]int32{{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 1}, {5, 2}, {136, -1}, {10, 200}}

// eBPF encodings (include/uapi/linux/bpf.h, bpf_common.h).
const (
	bpfLdxMemW  = 0x61 // BPF_LDX | BPF_MEM | BPF_W
	bpfAnd64K   = 0x57 // BPF_ALU64 | BPF_AND | BPF_K
	bpfRsh64K   = 0x77 // BPF_ALU64 | BPF_RSH | BPF_K
	bpfMov64K   = 0xb7 // BPF_ALU64 | BPF_MOV | BPF_K
	bpfMov64X   = 0xbf // BPF_ALU64 | BPF_MOV | BPF_X
	bpfJeqK     = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	bpfJneK     = 0x55 // BPF_JMP | BPF_JNE | BPF_K
	bpfJsetK    = 0x45 // BPF_JMP | BPF_JSET | BPF_K
	bpfExit     = 0x95
	devTypeChar = 2 // BPF_DEVCG_DEV_CHAR
	accMknod    = 1 // BPF_DEVCG_ACC_MKNOD
)

// errNoDeviceFilter: the kernel cannot filter devices by cgroup.
var errNoDeviceFilter = errors.New("the guest kernel has no cgroup device filter (CONFIG_CGROUP_BPF)")

type bpfInsn struct {
	code uint8
	regs uint8 // dst in the low nibble, src in the high one
	off  int16
	imm  int32
}

func insn(code, dst, src uint8, off int16, imm int32) bpfInsn {
	return bpfInsn{code: code, regs: dst | src<<4, off: off, imm: imm}
}

// deviceProgram is the filter: r1 is struct bpf_cgroup_dev_ctx
// {access_type = access<<16 | type, major, minor}; r0 = 1 allows. Each
// allowed device is a block of four instructions.
func deviceProgram() []bpfInsn {
	p := []bpfInsn{
		insn(bpfLdxMemW, 2, 1, 0, 0),     // r2 = access_type
		insn(bpfMov64X, 3, 2, 0, 0),      // r3 = r2
		insn(bpfAnd64K, 3, 0, 0, 0xffff), // r3 = type
		insn(bpfRsh64K, 2, 0, 0, 16),     // r2 = access
		insn(bpfLdxMemW, 4, 1, 4, 0),     // r4 = major
		insn(bpfLdxMemW, 5, 1, 8, 0),     // r5 = minor
		// Only mknod asked: allowed for any device (the capability decides).
		insn(bpfJsetK, 2, 0, 2, ^int32(accMknod)),
		insn(bpfMov64K, 0, 0, 0, 1),
		insn(bpfExit, 0, 0, 0, 0),
		// Not a character device: denied.
		insn(bpfJneK, 3, 0, int16(4*len(allowedDevices)), devTypeChar),
	}
	for _, d := range allowedDevices {
		minor := insn(bpfJneK, 5, 0, 2, d[1])
		if d[1] < 0 {
			minor = insn(bpfJneK, 4, 0, 2, d[0]) // any minor: the major again
		}
		p = append(p,
			insn(bpfJneK, 4, 0, 3, d[0]),
			minor,
			insn(bpfMov64K, 0, 0, 0, 1),
			insn(bpfExit, 0, 0, 0, 0),
		)
	}
	return append(p, insn(bpfMov64K, 0, 0, 0, 0), insn(bpfExit, 0, 0, 0, 0))
}

// bpfLoadAttempts bounds the reloads of an interrupted verifier run (a
// variable for the test that proves the signal mask alone suffices).
var bpfLoadAttempts = 100

// loadUninterrupted runs BPF_PROG_LOAD on a thread that blocks all
// signals for the call, so no signal can interrupt the verifier.
func loadUninterrupted(attr unsafe.Pointer, size uintptr) (uintptr, unix.Errno) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	// Should the mask not change, the reloads below are what is left.
	if unix.PthreadSigmask(unix.SIG_BLOCK, &all, &old) == nil {
		defer unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	}
	var fd uintptr
	var e unix.Errno
	for range bpfLoadAttempts {
		if fd, _, e = unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(attr), size); e != unix.EAGAIN {
			break
		}
	}
	return fd, e
}

// limitDevices attaches the device filter to the cgroup open at cgroupFD;
// it stays attached as long as the cgroup exists.
func limitDevices(cgroupFD int) error {
	prog := deviceProgram()
	raw := make([]byte, 0, 8*len(prog))
	for _, in := range prog {
		raw = append(raw, in.code, in.regs)
		raw = binary.NativeEndian.AppendUint16(raw, uint16(in.off))
		raw = binary.NativeEndian.AppendUint32(raw, uint32(in.imm))
	}
	license := []byte("Apache-2.0\x00")
	var logBuf [4096]byte
	load := struct {
		progType, insnCnt uint32
		insns, license    uint64
		logLevel, logSize uint32
		logBuf            uint64
	}{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE, insnCnt: uint32(len(prog)),
		insns: uint64(uintptr(unsafe.Pointer(&raw[0]))), license: uint64(uintptr(unsafe.Pointer(&license[0]))),
		logLevel: 1, logSize: uint32(len(logBuf)), logBuf: uint64(uintptr(unsafe.Pointer(&logBuf[0]))),
	}
	// The verifier gives up with EAGAIN whenever a signal is pending for
	// the loading thread (since Linux 4.20). The agent is a reaper, so
	// SIGCHLD can land on any of its threads, and the Go runtime signals
	// threads for preemption: under a storm of exits a bounded reload loop
	// ran out (make test, load 796 of a SIGCHLD flood). Blocking every
	// signal on this thread for the syscall removes the cause: the kernel
	// delivers process signals to another thread, and a thread signal stays
	// pending until the mask is restored. The reload stays for a kernel
	// that interrupts for another reason.
	fd, e := loadUninterrupted(unsafe.Pointer(&load), unsafe.Sizeof(load))
	runtime.KeepAlive(raw)
	runtime.KeepAlive(license)
	if e == unix.ENOSYS || (e == unix.EINVAL && cString(logBuf[:]) == "") {
		// A kernel without CONFIG_BPF_SYSCALL or CONFIG_CGROUP_BPF.
		return fmt.Errorf("load the device filter: %w: %w", e, errNoDeviceFilter)
	}
	if e != 0 {
		return fmt.Errorf("load the device filter: %w (verifier: %s)", e, cString(logBuf[:]))
	}
	defer unix.Close(int(fd))
	attach := struct{ targetFD, progFD, attachType, flags uint32 }{uint32(cgroupFD), uint32(fd), unix.BPF_CGROUP_DEVICE, 0}
	if _, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_ATTACH, uintptr(unsafe.Pointer(&attach)), unsafe.Sizeof(attach)); e != 0 {
		return fmt.Errorf("attach the device filter: %w", e)
	}
	return nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// limitDevices puts the device filter on the container's cgroup.
func (c *cgroup) limitDevices() error {
	fd, err := c.openDir()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return limitDevices(fd)
}
