package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/guest"
)

// vzModule is the Go binding of Virtualization.framework the shim links.
const vzModule = "github.com/Code-Hex/vz/v3"

// versions collects what a report about this machine needs: the build, the
// OS, the chip, the SDK and vz on a Mac, the hypervisor and the guest.
// Nothing here fails the run; an unknown value says why.
func versions(ctx context.Context, bin, shimBin, guestDir string) []Row {
	v := []Row{
		{Name: "vk-applevm", Detail: firstLine(command(ctx, bin, "version"))},
		{Name: "Go", Detail: goVersion(bin)},
		{Name: "OS", Detail: osVersion(ctx)},
		{Name: "host kernel", Detail: hostKernel()},
		{Name: "chip / CPU", Detail: chip(ctx)},
	}
	if runtime.GOOS == "darwin" {
		v = append(v,
			Row{Name: "macOS SDK", Detail: firstLine(command(ctx, "xcrun", "--show-sdk-version"))},
			Row{Name: "vz", Detail: moduleVersion(shimBin, vzModule)},
			Row{Name: "hypervisor", Detail: "Virtualization.framework"})
	} else {
		v = append(v,
			Row{Name: "macOS SDK", Detail: "n/a (" + runtime.GOOS + ")"},
			Row{Name: "vz", Detail: "n/a (not linked into " + runtime.GOOS + " builds)"},
			Row{Name: "hypervisor", Detail: firstLine(command(ctx, qemuBinary(), "--version"))})
	}
	g := "unknown: "
	if b, err := guest.Find(guestDir); err != nil {
		g += err.Error()
	} else {
		g = fmt.Sprintf("%s, kernel %s", b.Arch, b.KernelRelease)
	}
	return append(v, Row{Name: "guest", Detail: g})
}

// qemuBinary is the QEMU the Linux backend runs for this host's guests.
func qemuBinary() string {
	if runtime.GOARCH == "arm64" {
		return "qemu-system-aarch64"
	}
	return "qemu-system-x86_64"
}

// command runs a short command and returns its output, or why it failed.
func command(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return fmt.Sprintf("unknown (%s: %v)", name, err)
	}
	return strings.TrimSpace(string(out))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// goVersion is the Go release bin was built with.
func goVersion(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "unknown: " + err.Error()
	}
	return bi.GoVersion
}

// moduleVersion is the version of module linked into bin, from the build
// information Go records in every binary (what `go version -m` prints).
func moduleVersion(bin, module string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "unknown: " + err.Error()
	}
	for _, d := range bi.Deps {
		if d.Path != module {
			continue
		}
		if d.Replace != nil {
			return fmt.Sprintf("%s (replaced by %s %s)", d.Version, d.Replace.Path, d.Replace.Version)
		}
		return d.Version
	}
	return fmt.Sprintf("not linked into %s", filepath.Base(bin))
}

func osVersion(ctx context.Context) string {
	if runtime.GOOS == "darwin" {
		return fmt.Sprintf("macOS %s (%s)", command(ctx, "sw_vers", "-productVersion"), command(ctx, "sw_vers", "-buildVersion"))
	}
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "unknown: " + err.Error()
	}
	if v := osReleaseField(b, "PRETTY_NAME"); v != "" {
		return v
	}
	return "unknown: no PRETTY_NAME in /etc/os-release"
}

// osReleaseField reads KEY="value" from os-release(5) content.
func osReleaseField(b []byte, key string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && k == key {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}

func hostKernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown: " + err.Error()
	}
	return fmt.Sprintf("%s %s %s", unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]),
		unix.ByteSliceToString(u.Machine[:]))
}

// chip names the processor: the chip and model on a Mac (Apple M2,
// Mac14,2), /proc/cpuinfo's model name on Linux; with the cores Go sees.
func chip(ctx context.Context) string {
	if runtime.GOOS == "darwin" {
		return fmt.Sprintf("%s, %s, %d cores", command(ctx, "sysctl", "-n", "machdep.cpu.brand_string"),
			command(ctx, "sysctl", "-n", "hw.model"), runtime.NumCPU())
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown: " + err.Error()
	}
	return fmt.Sprintf("%s, %d cores", cpuModel(b), runtime.NumCPU())
}

// cpuModel is the first "model name" of /proc/cpuinfo (x86), else its
// "CPU implementer"/"CPU part" (arm64, which has no model name).
func cpuModel(cpuinfo []byte) string {
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		k = strings.TrimSpace(k)
		if ok && fields[k] == "" {
			fields[k] = strings.TrimSpace(v)
		}
	}
	if m := fields["model name"]; m != "" {
		return m
	}
	if fields["CPU implementer"] != "" {
		return fmt.Sprintf("implementer %s part %s", fields["CPU implementer"], fields["CPU part"])
	}
	return "unknown model"
}
