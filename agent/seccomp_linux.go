package agent

import (
	"fmt"
	"math/bits"
	"slices"

	bpfseccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Seccomp modes of api.Security.Seccomp.
const (
	seccompUnconfined     = "unconfined"
	seccompRuntimeDefault = "runtime/default"
	seccompLocalhost      = "localhost"
)

// compileSeccomp turns a container's seccomp setting into the BPF program
// its processes load last before exec (nil: unconfined). The profile is
// moby's default or a Docker-format JSON profile, resolved for this guest
// (its architecture, its kernel version and the container's capabilities,
// as moby resolves it), and compiled by go-seccomp-bpf. What it cannot
// express is refused rather than weakened: a default errno other than
// EPERM, argument tests other than comparisons and bit tests. Syscalls the
// compiler does not know for this architecture are left to the default
// action, and so is every call of another architecture (32-bit x86
// binaries on x86-64): unlike libseccomp's filters, the program covers the
// native architecture only.
func compileSeccomp(mode string, profileJSON []byte, caps []string) ([]unix.SockFilter, error) {
	if mode == seccompRuntimeDefault {
		if kv, ok := guestKernel(); ok {
			if f, ok := precompiledDefault.lookup(caps, kv); ok {
				return f, nil
			}
		}
	}
	return compileSeccompProfile(mode, profileJSON, caps)
}

// compileSeccompProfile is compileSeccomp without the precompiled filter.
func compileSeccompProfile(mode string, profileJSON []byte, caps []string) ([]unix.SockFilter, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	var prof *specs.LinuxSeccomp
	var err error
	switch mode {
	case "", seccompUnconfined:
		return nil, nil
	case seccompRuntimeDefault:
		prof, err = seccomp.GetDefaultProfile(rs)
	case seccompLocalhost:
		prof, err = seccomp.LoadProfile(string(profileJSON), rs)
	default:
		return nil, fmt.Errorf("seccomp %q: want %q, %q or %q: %w", mode, seccompUnconfined, seccompRuntimeDefault, seccompLocalhost, ErrInvalidArgument)
	}
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %v: %w", err, ErrInvalidArgument)
	}
	if prof == nil {
		return nil, nil
	}
	policy, err := seccompPolicy(prof, arch.GetInfo)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %v: %w", err, ErrInvalidArgument)
	}
	insts, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("compile seccomp profile: %v: %w", err, ErrInvalidArgument)
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, fmt.Errorf("assemble seccomp filter: %w", err)
	}
	if len(raw) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp filter has %d instructions, more than the kernel's %d: %w", len(raw), unix.BPF_MAXINSNS, ErrInvalidArgument)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, in := range raw {
		out[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return out, nil
}

// seccompPolicy translates a resolved OCI profile into go-seccomp-bpf's
// terms for the native architecture (archInfo("") is it).
func seccompPolicy(prof *specs.LinuxSeccomp, archInfo func(string) (*arch.Info, error)) (*bpfseccomp.Policy, error) {
	native, err := archInfo("")
	if err != nil {
		return nil, err
	}
	if len(prof.Architectures) > 0 && !slices.Contains(prof.Architectures, ociArch(native)) {
		return nil, fmt.Errorf("profile architectures %v do not include this guest's %s", prof.Architectures, native.Name)
	}
	if len(prof.Flags) > 0 || prof.ListenerPath != "" {
		return nil, fmt.Errorf("profile flags and listeners are not supported")
	}
	def, err := seccompAction(prof.DefaultAction, prof.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("default action: %w", err)
	}
	if def&unix.SECCOMP_RET_ACTION_FULL == bpfseccomp.ActionErrno && def != bpfseccomp.ActionErrno {
		return nil, fmt.Errorf("default errno %d: only EPERM is supported", def&unix.SECCOMP_RET_DATA)
	}
	policy := &bpfseccomp.Policy{DefaultAction: def}
	for i, rule := range prof.Syscalls {
		act, err := seccompAction(rule.Action, rule.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("rule %d (%v): %w", i, rule.Names, err)
		}
		if act == def {
			continue // the default does it anyway
		}
		var conds bpfseccomp.ArgumentConditions
		for _, a := range rule.Args {
			c, err := seccompCondition(a)
			if err != nil {
				return nil, fmt.Errorf("rule %d (%v): %w", i, rule.Names, err)
			}
			conds = append(conds, c)
		}
		g := bpfseccomp.SyscallGroup{Action: act}
		for _, name := range rule.Names {
			if _, known := native.SyscallNames[name]; !known || slices.Contains(g.Names, name) || slices.ContainsFunc(g.NamesWithCondtions, func(n bpfseccomp.NameWithConditions) bool { return n.Name == name }) {
				continue
			}
			if len(conds) == 0 {
				g.Names = append(g.Names, name)
			} else {
				g.NamesWithCondtions = append(g.NamesWithCondtions, bpfseccomp.NameWithConditions{Name: name, Conditions: conds})
			}
		}
		if len(g.Names)+len(g.NamesWithCondtions) > 0 {
			policy.Syscalls = append(policy.Syscalls, g)
		}
	}
	if len(policy.Syscalls) == 0 {
		// go-seccomp-bpf wants one group; an empty profile is its default.
		policy.Syscalls = []bpfseccomp.SyscallGroup{{Names: []string{"exit_group"}, Action: def}}
	}
	return policy, nil
}

func ociArch(a *arch.Info) specs.Arch {
	switch a.Name {
	case "x86_64":
		return specs.ArchX86_64
	case "aarch64":
		return specs.ArchAARCH64
	}
	return specs.Arch("SCMP_ARCH_" + a.Name)
}

func seccompAction(a specs.LinuxSeccompAction, errno *uint) (bpfseccomp.Action, error) {
	switch a {
	case specs.ActAllow:
		return bpfseccomp.ActionAllow, nil
	case specs.ActErrno:
		if errno == nil || *errno == uint(unix.EPERM) {
			return bpfseccomp.ActionErrno, nil
		}
		if *errno > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errno %d out of range", *errno)
		}
		return bpfseccomp.ActionErrno | bpfseccomp.Action(*errno), nil
	case specs.ActKill, specs.ActKillThread:
		return bpfseccomp.ActionKillThread, nil
	case specs.ActKillProcess:
		return bpfseccomp.ActionKillProcess, nil
	case specs.ActTrap:
		return bpfseccomp.ActionTrap, nil
	case specs.ActLog:
		return bpfseccomp.ActionLog, nil
	}
	return 0, fmt.Errorf("action %q is not supported", a)
}

func seccompCondition(a specs.LinuxSeccompArg) (bpfseccomp.Condition, error) {
	c := bpfseccomp.Condition{Argument: uint32(a.Index), Value: a.Value}
	switch a.Op {
	case specs.OpEqualTo:
		c.Operation = bpfseccomp.Equal
	case specs.OpNotEqual:
		c.Operation = bpfseccomp.NotEqual
	case specs.OpLessThan:
		c.Operation = bpfseccomp.LessThan
	case specs.OpLessEqual:
		c.Operation = bpfseccomp.LessOrEqual
	case specs.OpGreaterThan:
		c.Operation = bpfseccomp.GreaterThan
	case specs.OpGreaterEqual:
		c.Operation = bpfseccomp.GreaterOrEqual
	case specs.OpMaskedEqual:
		// (arg & Value) == ValueTwo: no bits of the mask set, or its one
		// bit set, are what bit tests express.
		switch {
		case a.ValueTwo == 0:
			c.Operation = bpfseccomp.BitsNotSet
		case a.ValueTwo == a.Value && bits.OnesCount64(a.Value) == 1:
			c.Operation = bpfseccomp.BitsSet
		default:
			return c, fmt.Errorf("SCMP_CMP_MASKED_EQ %#x == %#x is not supported", a.Value, a.ValueTwo)
		}
	default:
		return c, fmt.Errorf("argument operator %q is not supported", a.Op)
	}
	return c, nil
}
