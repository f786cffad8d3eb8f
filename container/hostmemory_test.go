package container

import (
	"errors"
	"os"
	"testing"
)

func TestHostMemoryNeverTheShimsUnderVZ(t *testing.T) {
	// Under vz the recorded pid is the shim's own: its RSS is not the VM's.
	if n, err := hostMemory("vz", os.Getpid()); !errors.Is(err, errHostMemoryUnknown) || n != 0 {
		t.Fatalf("vz: %d, %v; want unknown", n, err)
	}
	if n, err := hostMemory("qemu", os.Getpid()); err != nil || n == 0 {
		t.Fatalf("qemu (this process standing in for QEMU): %d, %v", n, err)
	}
	if _, err := hostMemory("qemu", 0); !errors.Is(err, errHostMemoryUnknown) {
		t.Fatalf("no pid: %v", err)
	}
}
