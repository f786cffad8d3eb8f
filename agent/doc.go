// Package agent is the guest agent: the static binary that runs as PID 1 in
// every VM (/init in the initrd) and serves agent/api to the host.
//
// What runs where:
//   - In the guest, as PID 1 (cmd/vk-applevm-agent): the boot duties in
//     pid1_linux.go (MountSystem, SetOOMScoreAdj, console stdio), kernel
//     module loading (ModuleLoader over /lib/vkav/modules.list), the
//     Reaper in reap-everything mode, and Server serving gRPC over
//     agent/transport's listener on the "vkav.agent" console port; container
//     output goes to the "vkav.log" port through a LogQueue. Shutdown ends in
//     PowerOff (SIGTERM/SIGKILL everything, sync, unmount, reboot(2)).
//   - On a Linux host, for tests and development: the same Server, with a
//     Reaper that waits only for the processes it started, behind a unix
//     socket (`vk-applevm-agent --listen unix:PATH`) or in-process.
//
// The pieces that only make sense as PID 1 are separate functions with
// their system calls injectable, so the logic is unit-tested here and the
// whole runs in the VM integration suite.
//
// Only Linux runs the agent; the files without a _linux suffix hold the
// platform-neutral logic (output fan-out, log queue, reaper dispatch,
// module lists, /etc files, the files-volume writer) so it builds and is
// vetted everywhere.
package agent
