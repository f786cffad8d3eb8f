package vz

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shortTempDir keeps socket paths under macOS's 104-byte limit.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestPortPipesCarryBothWays(t *testing.T) {
	ends := newHostEnds()
	defer ends.closeAll()
	guestIn, guestOut, err := ends.addPort("vkav.agent")
	if err != nil {
		t.Fatal(err)
	}
	port := ends.ports["vkav.agent"]

	// What vz writes (the guest's output) reaches the host end...
	if _, err := guestOut.Write([]byte("from guest")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := port.Read(buf)
	if err != nil || string(buf[:n]) != "from guest" {
		t.Errorf("host read %q, %v; want %q", buf[:n], err, "from guest")
	}
	// ...and what the host writes is what vz reads for the guest.
	if _, err := port.Write([]byte("to guest")); err != nil {
		t.Fatal(err)
	}
	n, err = guestIn.Read(buf)
	if err != nil || string(buf[:n]) != "to guest" {
		t.Errorf("vz side read %q, %v; want %q", buf[:n], err, "to guest")
	}
}

// Releasing vz's side (when the machine stops) gives the host reader EOF,
// which is how the shim learns the port is gone.
func TestReleasingVZSideGivesEOF(t *testing.T) {
	ends := newHostEnds()
	if _, _, err := ends.addPort("vkav.log"); err != nil {
		t.Fatal(err)
	}
	port := ends.ports["vkav.log"]
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(port)
		done <- err
	}()
	ends.closeVZSide()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("reading until EOF: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("host end did not see EOF after the vz side was released")
	}
	ends.closeAll()
	if _, err := port.Write([]byte("x")); err == nil {
		t.Error("port still writable after closeAll")
	}
}

func TestSwitchSocket(t *testing.T) {
	dir := shortTempDir(t)
	switchAddr := &net.UnixAddr{Name: filepath.Join(dir, "switch.sock"), Net: "unixgram"}
	sw, err := net.ListenUnixgram("unixgram", switchAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	sw.SetDeadline(time.Now().Add(10 * time.Second))

	ends := newHostEnds()
	local := filepath.Join(dir, "nic0.sock")
	// A stale socket file from an earlier run is replaced.
	if err := os.WriteFile(local, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	nic, err := ends.addSwitchSocket(local, switchAddr.Name)
	if err != nil {
		t.Fatalf("addSwitchSocket: %v", err)
	}

	// One write is one frame at the switch, sent from the NIC's address...
	if _, err := nic.Write([]byte("frame to switch")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, from, err := sw.ReadFromUnix(buf)
	if err != nil || string(buf[:n]) != "frame to switch" || from == nil || from.Name != local {
		t.Fatalf("switch got %q from %v (%v), want the frame from %s", buf[:n], from, err, local)
	}
	// ...so the switch can answer it.
	if _, err := sw.WriteToUnix([]byte("frame to nic"), from); err != nil {
		t.Fatal(err)
	}
	n, err = nic.Read(buf)
	if err != nil || string(buf[:n]) != "frame to nic" {
		t.Fatalf("nic got %q (%v), want the switch's frame", buf[:n], err)
	}

	ends.closeVZSide()
	if _, err := os.Stat(local); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after release: %v", err)
	}
}

func TestSwitchSocketErrors(t *testing.T) {
	dir := shortTempDir(t)
	ends := newHostEnds()
	defer ends.closeAll()
	if _, err := ends.addSwitchSocket(filepath.Join(dir, "nic0.sock"), filepath.Join(dir, "absent.sock")); err == nil ||
		!strings.Contains(err.Error(), "connect to switch") {
		t.Errorf("missing switch: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nic0.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed connect left its socket file: %v", err)
	}
	long := filepath.Join(dir, strings.Repeat("n", maxUnixPath))
	if _, err := ends.addSwitchSocket(long, filepath.Join(dir, "switch.sock")); err == nil ||
		!strings.Contains(err.Error(), "macOS allows 103") {
		t.Errorf("over-long path: %v", err)
	}
}
