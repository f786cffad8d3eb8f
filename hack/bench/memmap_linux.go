package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// qemuMemoryMap is where a QEMU process's resident memory is, from
// /proc/<pid>/smaps: what the figures' details say the idle difference
// between a container VM and the floor VM is made of.
type qemuMemoryMap struct {
	// GuestRAM is the resident part of the guest's RAM block: the pages
	// the guest touched and did not report free.
	GuestRAM uint64
	// GuestRAMHuge is the part of GuestRAM in the host's transparent huge
	// pages (QEMU asks for them; one guest page touched then costs 2 MiB).
	GuestRAMHuge uint64
	// TCG is TCG's translated code buffer (QEMU's one anonymous rwx
	// mapping; absent under KVM and vz): it grows with the guest code run.
	TCG uint64
	// Initrd is QEMU's mapping of the initrd file (x86 reads it through
	// g_mapped_file and keeps it for fw_cfg for the VM's life).
	Initrd uint64
	// Heap is the rest of QEMU's anonymous memory (its heap, the kernel
	// image it copied, thread stacks).
	Heap uint64
	// Files is the rest of the file mappings (QEMU and its libraries, mostly
	// shared with every other QEMU).
	Files uint64
}

// readQEMUMemoryMap classifies pid's resident memory. guestRAM is the size
// of the guest's RAM (-m); initrd the initrd file QEMU was given.
func readQEMUMemoryMap(pid int, guestRAM uint64, initrd string) (qemuMemoryMap, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return qemuMemoryMap{}, fmt.Errorf("read memory map of process %d: %w", pid, err)
	}
	return parseQEMUSmaps(string(data), guestRAM, filepath.Base(initrd)), nil
}

func parseQEMUSmaps(smaps string, guestRAM uint64, initrdName string) qemuMemoryMap {
	var m qemuMemoryMap
	var perms, path string
	var size uint64
	var inGuestRAM bool
	for _, line := range strings.Split(smaps, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			perms, path = f[1], ""
			if len(f) >= 6 {
				path = strings.Join(f[5:], " ")
			}
			size, inGuestRAM = 0, false
			if lo, hi, ok := strings.Cut(f[0], "-"); ok {
				l, err1 := strconv.ParseUint(lo, 16, 64)
				h, err2 := strconv.ParseUint(hi, 16, 64)
				if err1 == nil && err2 == nil {
					size = h - l
				}
			}
		case len(f) >= 2 && f[0] == "Rss:":
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			rss := kb << 10
			anon := path == "" || strings.HasPrefix(path, "/memfd:") || strings.HasPrefix(path, "[")
			switch {
			// The RAM block is -m rounded up by QEMU's alignment; a
			// shared-memory VM's is the memfd "mem".
			case anon && size >= guestRAM && size < guestRAM+16<<20 && !strings.Contains(perms, "x"),
				path == "/memfd:mem (deleted)" || path == "/memfd:mem":
				m.GuestRAM += rss
				inGuestRAM = true
			case anon && strings.Contains(perms, "x") && size >= 16<<20:
				m.TCG += rss
			case initrdName != "" && filepath.Base(path) == initrdName:
				m.Initrd += rss
			case anon:
				m.Heap += rss
			default:
				m.Files += rss
			}
		case len(f) >= 2 && f[0] == "AnonHugePages:" && inGuestRAM:
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			m.GuestRAMHuge += kb << 10
		}
	}
	return m
}

func (m qemuMemoryMap) String() string {
	return fmt.Sprintf("guest RAM %s (%s in huge pages), TCG code %s, initrd %s, heap %s, files %s",
		fmtMiB(m.GuestRAM), fmtMiB(m.GuestRAMHuge), fmtMiB(m.TCG), fmtMiB(m.Initrd), fmtMiB(m.Heap), fmtMiB(m.Files))
}

// medianMemoryMap is the median of each part over ms.
func medianMemoryMap(ms []qemuMemoryMap) qemuMemoryMap {
	part := func(get func(qemuMemoryMap) uint64) uint64 {
		vs := make([]uint64, len(ms))
		for i, m := range ms {
			vs[i] = get(m)
		}
		return median(vs)
	}
	return qemuMemoryMap{
		GuestRAM:     part(func(m qemuMemoryMap) uint64 { return m.GuestRAM }),
		GuestRAMHuge: part(func(m qemuMemoryMap) uint64 { return m.GuestRAMHuge }),
		TCG:          part(func(m qemuMemoryMap) uint64 { return m.TCG }),
		Initrd:       part(func(m qemuMemoryMap) uint64 { return m.Initrd }),
		Heap:         part(func(m qemuMemoryMap) uint64 { return m.Heap }),
		Files:        part(func(m qemuMemoryMap) uint64 { return m.Files }),
	}
}
