package hostinfo

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func readOS() (OS, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return OS{}, fmt.Errorf("uname: %w", err)
	}
	o := OS{
		Image:         osRelease("/etc/os-release"),
		KernelVersion: unix.ByteSliceToString(u.Release[:]),
		Arch:          runtime.GOARCH,
		MachineID:     firstLine("/etc/machine-id"),
		BootID:        firstLine("/proc/sys/kernel/random/boot_id"),
		// Readable by root only; empty otherwise, as the kubelet reports it.
		SystemUUID: strings.ToLower(firstLine("/sys/class/dmi/id/product_uuid")),
	}
	if o.Image == "" {
		o.Image = "Linux"
	}
	return o, nil
}

// osRelease returns PRETTY_NAME from an os-release(5) file, "" if none.
func osRelease(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || k != "PRETTY_NAME" {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			return uq
		}
		return strings.Trim(v, `"'`)
	}
	return ""
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}
