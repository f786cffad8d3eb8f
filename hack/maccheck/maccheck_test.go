package main

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/internal/doctor"
)

// TestSummarizeDoctor reads a table printed by doctor's own Print, with
// every status and the fixes after it.
func TestSummarizeDoctor(t *testing.T) {
	rep := doctor.Run(context.Background(), []doctor.Check{
		{Name: "hypervisor", Run: func(context.Context) doctor.Result { return doctor.Result{Detail: "qemu works"} }},
		{Name: "guest kernel and initrd", Run: func(context.Context) doctor.Result {
			return doctor.Result{Status: doctor.Fail, Detail: "no bundle.json", Fix: "make guest"}
		}},
		{Name: "disk space", Run: func(context.Context) doctor.Result {
			return doctor.Result{Status: doctor.Warn, Detail: "3.0 GiB free", Fix: "free space"}
		}},
		{Name: "cluster", Run: func(context.Context) doctor.Result {
			return doctor.Result{Status: doctor.Skip, Detail: "no --kubeconfig given"}
		}},
	})
	var out bytes.Buffer
	rep.Print(&out)
	got := summarizeDoctor(out.String())
	want := "4 checks: 1 FAIL, 1 ok, 1 skip, 1 warn; guest kernel and initrd FAIL (no bundle.json); disk space warn (3.0 GiB free)"
	if got != want {
		t.Errorf("summary\n got %q\nwant %q\nof:\n%s", got, want, out.String())
	}
	if got := summarizeDoctor("vk-applevm: unknown command \"doctor\"\n"); !strings.HasPrefix(got, "no table") {
		t.Errorf("summary of no table: %q", got)
	}
}

func TestReportPrint(t *testing.T) {
	rep := &Report{
		Versions: []Row{{Name: "OS", Detail: "macOS 15.1 (24B83)"}, {Name: "vz", Detail: ""}},
		Checks: []Row{
			{Name: checkBoot, Status: Pass, Detail: "up in 1.2 s"},
			{Name: checkChown, Status: Fail, Detail: "exit 1: chown: /data/db: Operation not permitted\nmore | text"},
			{Name: checkRosetta, Status: NotApplicable, Detail: "Rosetta exists only on macOS"},
		},
	}
	var out bytes.Buffer
	rep.Print(&out)
	want := `| component | version |
|---|---|
| OS | macOS 15.1 (24B83) |
| vz | - |

| check | result | detail |
|---|---|---|
| boot a VM (busybox) | PASS | up in 1.2 s |
| chown on an emptyDir-style volume | FAIL | exit 1: chown: /data/db: Operation not permitted more \| text |
| Rosetta (linux/amd64) | n/a | Rosetta exists only on macOS |

mac-check: 1 passed, 1 failed, 1 not run here
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if !rep.Failed() {
		t.Error("a FAIL row does not fail the report")
	}
	rep.Checks[1].Status = Skipped
	if rep.Failed() {
		t.Error("skip and n/a rows fail the report")
	}
}

func TestOSReleaseField(t *testing.T) {
	b := []byte("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n")
	if got := osReleaseField(b, "PRETTY_NAME"); got != "Debian GNU/Linux 12 (bookworm)" {
		t.Errorf("PRETTY_NAME %q", got)
	}
	if got := osReleaseField(b, "ID"); got != "debian" {
		t.Errorf("ID %q", got)
	}
}

func TestCPUModel(t *testing.T) {
	x86 := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got := cpuModel([]byte(x86)); got != "Intel(R) Xeon(R) CPU @ 2.20GHz" {
		t.Errorf("x86: %q", got)
	}
	arm := "processor\t: 0\nBogoMIPS\t: 48.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
	if got := cpuModel([]byte(arm)); got != "implementer 0x41 part 0xd0c" {
		t.Errorf("arm64: %q", got)
	}
}

// TestModuleVersion reads this test binary's own build information: the
// modules it links have versions, vz is linked only on darwin.
func TestModuleVersion(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got := moduleVersion(exe, "golang.org/x/sys"); !strings.HasPrefix(got, "v0.") {
		t.Errorf("golang.org/x/sys in the test binary: %q", got)
	}
	if runtime.GOOS != "darwin" {
		if got := moduleVersion(exe, vzModule); !strings.HasPrefix(got, "not linked") {
			t.Errorf("vz on %s: %q", runtime.GOOS, got)
		}
	}
	if got := moduleVersion("/nonexistent", vzModule); !strings.HasPrefix(got, "unknown") {
		t.Errorf("no binary: %q", got)
	}
}
