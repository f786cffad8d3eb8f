// Package shim runs each virtual machine in its own detached helper process,
// so that restarting or upgrading the node process never stops a running
// pod (containerd's shim model: state on disk, re-attach or clean up).
//
// The node calls Launch, which writes the machine's directory and starts
// the shim binary found next to the node's (`vk-applevm-shim --dir DIR`,
// cmd/vk-applevm-shim; see FindBinary) in a new session; that process calls
// Run. The node and the shim talk only through DIR (the files and sockets
// below), so a node re-attaches to shims started by an earlier build, or by
// the node binary itself (`vk-applevm shim`, what every VM ran before the
// shim had a binary of its own), as long as this package's API on
// shim.sock, agent.sock and state.json stays compatible.
//
// The shim boots the machine through a vm.Driver and owns the machine's
// console ports for its whole life:
//
//   - "vkav.agent" carries the host end of agent/transport: a yamux client
//     session per guest hello; every connection to DIR/agent.sock becomes
//     one yamux stream (one gRPC connection to the guest agent) on the
//     current session, so node restarts never reset the guest side, and a
//     guest that reconnects gets a fresh session.
//   - "vkav.log" carries agent/logframe frames; the shim timestamps them on
//     arrival and appends CRI-format lines to LogDir/<name>.log, rotating by
//     size, so logs reach disk while the node is down and outlive the VM.
//
// DIR/shim.sock serves a small HTTP/JSON API (state, stop, kill, wait, and
// whether a container log is complete) used by Client, and DIR/state.json is rewritten atomically on every change so a
// later node process can learn what happened even after the shim has exited.
//
// Files in DIR: spec.json (vm.Spec), shim.json (Config), state.json (State),
// shim.log (the shim's own stdout/stderr), shim.sock, agent.sock, and hv/,
// the backend's private directory given to Driver.Start.
//
// Durability of container logs: every record is handed to the kernel with
// write(2) as soon as its line is complete (or, for a line still open, when
// no more output arrived for partialFlushDelay), so a crash of the shim loses
// at most that short tail. The shim fsyncs a log file before rotating it away
// and when it closes it: at the end frame the guest sends after a
// process's last output (logframe.End: the last line is written at once,
// the file synced and closed, and WaitLog answers), and at the end of the
// machine's life. It does not fsync
// every record (neither does the kubelet's runtime), so a host power loss can
// drop what the page cache held.
//
// If the shim dies, the machine dies with it (QEMU gets PDEATHSIG; under vz
// the machine lives inside the shim); Connect reports ErrShimDead and
// Client.Delete removes what is left, killing a leftover hypervisor only when
// its pid and start time match what the shim recorded.
package shim
