package main

import "testing"

func TestParseQEMUSmapsClassifiesTheMappings(t *testing.T) {
	const smaps = `555555554000-555555700000 r-xp 00000000 fd:01 123 /usr/bin/qemu-system-x86_64
Size:               1712 kB
Rss:                1024 kB
AnonHugePages:         0 kB
7f0000000000-7f0028000000 rw-p 00000000 00:00 0 
Size:             655360 kB
Rss:              110592 kB
AnonHugePages:     98304 kB
7f1000000000-7f1040000000 rwxp 00000000 00:00 0 
Size:            1048576 kB
Rss:               32768 kB
AnonHugePages:     32768 kB
7f2000000000-7f2000720000 r--p 00000000 fd:01 456 /tmp/bench/initrd.img
Size:               7296 kB
Rss:                7296 kB
7f3000000000-7f3000100000 rw-p 00000000 00:00 0 
Size:               1024 kB
Rss:                 512 kB
AnonHugePages:         0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  16 kB
`
	got := parseQEMUSmaps(smaps, 640<<20, "initrd.img")
	want := qemuMemoryMap{GuestRAM: 108 << 20, GuestRAMHuge: 96 << 20, TCG: 32 << 20, Initrd: 7296 << 10, Heap: 528 << 10, Files: 1 << 20}
	if got != want {
		t.Errorf("parseQEMUSmaps:\n got %+v\nwant %+v", got, want)
	}
}
