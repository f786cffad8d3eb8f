package main

import "time"

// bootSample is one boot of one variant.
type bootSample struct {
	// Wall is host time from Driver.Start to ready; CPU is the CPU time
	// QEMU used until then.
	Wall, CPU time.Duration
	// InitStart is the guest uptime at which the kernel ran /init (from
	// the console's printk timestamps): the kernel's share of the boot,
	// initramfs unpacking included.
	InitStart time.Duration
	// ServeStart and FirstAnswer are the guest uptimes at which the agent
	// began serving and answered the first Info (agent only).
	ServeStart, FirstAnswer time.Duration
	// AgentRSS is the agent's resident memory at ready (agent only).
	AgentRSS uint64
	// QEMU is the hypervisor's memory at ready.
	QEMU memory
}

// productSample is one container created through the whole product path.
type productSample struct {
	// Create is Runtime.Create until it returned (container ready: agent
	// up, guest configured, root filesystem mounted); HostSetup its part
	// before QEMU ran (disks, network, shim launch); CPU QEMU's CPU time
	// at that point.
	Create, HostSetup, CPU time.Duration
	// Agent RSS after Create and after a workload of execs with output
	// and stats.
	AgentRSSCreated, AgentRSSWorked uint64
	// AgentAnon and AgentFile split AgentRSSWorked into anonymous memory
	// (heap, stacks) and mapped file pages: the agent binary, which lives
	// in the initramfs (tmpfs), so its pages count as RssShmem. From
	// /proc/1/status seen from inside the container.
	AgentAnon, AgentFile uint64
	// Host memory of the idle VM after the workload.
	QEMU, Shim memory
}

// memory is a process's resident memory: RSS counts every page it maps
// once per process; PSS divides shared pages among their sharers, so it is
// what one more process of the kind really costs.
type memory struct {
	RSS, PSS uint64
}
