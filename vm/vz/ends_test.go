package vz

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/vm/consolelog"
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

// What vz writes to the serial console's end lands in the capped console
// log; once vz's ends are closed the log is complete, and it never holds
// more than the cap plus one previous file.
func TestConsoleEndsFeedTheCappedLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "console.log")
	ends := newHostEnds()
	_, guestOut, err := ends.addConsole(path, consolelog.MinMaxSize, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		fmt.Fprintf(guestOut, "[%6d] kernel says something\n", i)
	}
	ends.closeVZSide()
	ends.waitConsole(10 * time.Second)
	live, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := os.ReadFile(path + consolelog.PreviousSuffix)
	if len(live) > consolelog.MinMaxSize || len(prev) > consolelog.MinMaxSize || len(prev) == 0 {
		t.Fatalf("live %d, previous %d bytes; cap %d", len(live), len(prev), consolelog.MinMaxSize)
	}
	if !strings.HasSuffix(string(live), "[  1999] kernel says something\n") {
		t.Fatalf("the last line is missing once the ends are closed: %q", live[max(0, len(live)-80):])
	}
}
