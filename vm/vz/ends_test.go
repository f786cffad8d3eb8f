package vz

import (
	"io"
	"os"
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

func TestNICSocketIsHeldUntilRelease(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ends := newHostEnds()
	ends.keep(w)
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatalf("kept descriptor unusable: %v", err)
	}
	ends.closeVZSide()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("the NIC descriptor is still open after release")
	}
}
