package guest

// How the guest agent binary that goes into the initrd is built. The make
// fragments (guest/guest.mk, agent/agent.mk) and guest/guesttest use the
// same flags; agentbuild_test.go checks that they do and that the flags
// take effect.
const (
	// AgentBuildTags: grpcnotrace leaves out grpc-go's use of
	// golang.org/x/net/trace (the /debug/requests pages, which pull in
	// html/template). It cut the agent from 11.2 to 8.0 MB while the agent
	// served with grpc-go; since it serves with agent/grpcserver the agent
	// links neither (`go list -deps ./cmd/vk-applevm-agent`) and the tag
	// changes nothing (5,488,802 bytes with and without it, amd64). It
	// stays as a guard should grpc-go come back into the guest.
	AgentBuildTags = "grpcnotrace"
	// AgentGodebug is the runtime's built-in GODEBUG default
	// (runtime.godebugDefault, what //go:debug lines set; neither setting
	// has a //go:debug form). disablethp=1 keeps the agent's heap off
	// transparent huge pages, which Debian's cloud kernel enables for all
	// anonymous memory: the first 2 MiB of a heap of about 1.5 MiB became
	// one huge page (smaps AnonHugePages 2048 kB, agent RssAnon 4.9 MiB at
	// ready; 2.0 MiB without). memprofilerate=0 turns off heap profiling
	// and its 1.4 MiB bucket table, which the agent has no use for.
	AgentGodebug = "disablethp=1,memprofilerate=0"
	// AgentLDFlags are the linker flags: no symbol table or DWARF, and
	// AgentGodebug.
	AgentLDFlags = "-s -w -X=runtime.godebugDefault=" + AgentGodebug
	// AgentGcflags turn inlining off except in the runtime (whose
	// allocator and collector rely on it): 7.99 MB → 7.53 MB, about
	// 0.5 MiB less of the agent resident in the guest, and a faster boot
	// under TCG, which translates every function before it first runs
	// (hack/bench, same rounds: agent-ready / floor QEMU CPU 1.029x
	// against 1.088x, and 1.145x against 1.211x). The agent moves bytes
	// between file descriptors and gRPC; it has no hot loop of its own for
	// inlining to speed up.
	AgentGcflags = "all=-l"
	// AgentRuntimeGcflags restores the default for the runtime package.
	AgentRuntimeGcflags = "runtime="
)

// AgentBuildArgs are the `go build` flags for the agent (CGO_ENABLED=0
// goes in the environment); extraLDFlags such as -X main.version=... are
// appended to AgentLDFlags.
func AgentBuildArgs(extraLDFlags string) []string {
	ld := AgentLDFlags
	if extraLDFlags != "" {
		ld += " " + extraLDFlags
	}
	return []string{"-trimpath", "-tags", AgentBuildTags, "-gcflags", AgentGcflags, "-gcflags", AgentRuntimeGcflags, "-ldflags", ld}
}
