package qemu

import (
	"fmt"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/sys/unix"
)

// setuidModeCalls are the calls, with the index of their mode argument,
// by which virtiofsd could give a host file the setuid bit: chmod of an
// existing file, and the mode of one it creates. virtiofsd runs as root
// and a guest's root owns what it created, so the kernel lets virtiofsd
// set the bit with no capability at all (an owner may); ShareModcaps'
// dropped CAP_FSETID only stops setgid for another group's files. Names
// a host's architecture lacks (open, chmod, mknod on arm64) are left out.
var setuidModeCalls = []struct {
	name string
	arg  uint32
}{
	{"chmod", 1}, {"fchmod", 1}, {"fchmodat", 2}, {"fchmodat2", 2},
	{"open", 2}, {"openat", 3}, {"creat", 1}, {"mknod", 1}, {"mknodat", 2},
}

// setuidPolicy refuses with EPERM every call of setuidModeCalls whose
// mode has S_ISUID, so that a root container cannot plant a setuid binary
// on the host through its emptyDir. (glibc's open and openat pass a mode
// of 0 unless the file is being created.)
func setuidPolicy() (seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return seccomp.Policy{}, fmt.Errorf("seccomp architecture: %w", err)
	}
	g := seccomp.SyscallGroup{Action: seccomp.ActionErrno | seccomp.Action(unix.EPERM)}
	for _, c := range setuidModeCalls {
		if _, ok := info.SyscallNames[c.name]; !ok {
			continue
		}
		g.NamesWithCondtions = append(g.NamesWithCondtions, seccomp.NameWithConditions{
			Name:       c.name,
			Conditions: seccomp.ArgumentConditions{{Argument: c.arg, Operation: seccomp.BitsSet, Value: unix.S_ISUID}},
		})
	}
	return seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: []seccomp.SyscallGroup{g}}, nil
}

// refuseSetuidOnThisThread loads setuidPolicy on the calling OS thread
// only (no TSYNC): a child forked from it inherits the filter, the rest
// of the shim does not. The caller's thread must stay locked and end with
// its goroutine, as onOwnThread's does. Loading needs CAP_SYS_ADMIN (the
// shim runs as root on Linux), so no_new_privs is left alone.
func refuseSetuidOnThisThread() error {
	p, err := setuidPolicy()
	if err != nil {
		return err
	}
	if err := seccomp.LoadFilter(seccomp.Filter{Policy: p}); err != nil {
		return fmt.Errorf("load virtiofsd's setuid filter: %w", err)
	}
	return nil
}
