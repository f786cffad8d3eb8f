package main

import (
	"bufio"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
)

// checkStaticBinary refuses binaries that need a dynamic loader: the initrd
// has no /lib64/ld-linux*, so such an /init fails with ENOENT at boot, which
// the kernel reports only as a panic.
func checkStaticBinary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// maybeGunzip inflates r if it starts with the gzip magic (RFC 1952).
func maybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil {
		return nil, fmt.Errorf("read kernel header: %w", err)
	}
	if magic[0] != 0x1f || magic[1] != 0x8b {
		return br, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("inflate kernel: %w", err)
	}
	return zr, nil
}
