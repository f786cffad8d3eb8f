package imagetest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFindBusyboxDownloads checks the fallback for machines without
// busybox-static installed: apt-get download + dpkg-deb -x into the cache.
func TestFindBusyboxDownloads(t *testing.T) {
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: this fallback needs Debian's apt and dpkg (%v)", tool, err)
		}
	}
	saved := busyboxCandidates
	busyboxCandidates = []string{filepath.Join(t.TempDir(), "no-busybox-here")}
	t.Cleanup(func() { busyboxCandidates = saved })

	cache := t.TempDir()
	bin, err := FindBusybox(context.Background(), cache)
	if err != nil {
		t.Fatalf("FindBusybox with nothing installed: %v (apt-get download needs the Debian mirror)", err)
	}
	if !strings.HasPrefix(bin, cache) {
		t.Fatalf("busybox %s is not from the cache %s", bin, cache)
	}
	out, err := exec.Command(bin, "echo", "unpacked").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "unpacked" {
		t.Fatalf("run downloaded busybox: %v: %q", err, out)
	}
	// A second lookup uses the cache without downloading again.
	again, err := FindBusybox(context.Background(), cache)
	if err != nil || again != bin {
		t.Fatalf("second FindBusybox: %s, %v; want %s", again, err, bin)
	}
}
