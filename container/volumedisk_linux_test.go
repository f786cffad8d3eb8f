package container_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
)

// TestVolumeDiskIsAPOSIXEmptyDir: an emptyDir on a disk of its own (one
// container mounts it) behaves like the kubelet's on a real filesystem:
// empty, 0777 with fsGroup applied, chown by root and by a non-root owner
// work (they fail on vz's single-uid virtio-fs), its size is an exact cap
// (ENOSPC past sizeLimit), and the content survives a container restart
// and a new VM of the same container.
func TestVolumeDiskIsAPOSIXEmptyDir(t *testing.T) {
	rt := newRuntime(t)
	disk := filepath.Join(t.TempDir(), "volumes", "data.ext4")
	fsGroup := uint32(2000)
	cfg := container.VMConfig{
		Name: t.Name(), ImageRef: fixtures.busybox, LogDir: t.TempDir(),
		Mounts:   []container.Mount{{Kind: container.MountDisk, Destination: "/data", HostPath: disk, SizeBytes: 8 << 20}},
		Security: container.Security{FSGroup: &fsGroup},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sb, err := rt.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	run := func(sb *container.VM, uid uint32, script string) (string, int) {
		t.Helper()
		n++
		var out bytes.Buffer
		u, g := uid, uid
		st, err := sb.Exec(ctx, container.ProcessConfig{ID: "sh-" + string(rune('a'+n)), UID: &u, GID: &g, Args: []string{"sh", "-c", script}},
			container.IO{Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatalf("exec %q: %v", script, err)
		}
		return strings.TrimSpace(out.String()), st.Code
	}
	// Empty (no lost+found) and the kubelet's emptyDir mode with fsGroup:
	// 0777 plus setgid, group 2000.
	if out, code := run(sb, 0, "ls -A /data; stat -c '%a %u:%g' /data"); code != 0 || out != "2777 0:2000" {
		t.Fatalf("fresh volume: %q (exit %d), want only \"2777 0:2000\"", out, code)
	}
	// Root hands a directory to uid 1000 (postgres' and redis' entrypoints
	// do this); uid 1000 writes there and chowns its own file.
	if out, code := run(sb, 0, "mkdir /data/pg && chown 1000:1000 /data/pg && stat -c '%u:%g' /data/pg"); code != 0 || out != "1000:1000" {
		t.Fatalf("root chown: %q (exit %d)", out, code)
	}
	if out, code := run(sb, 1000, "echo kept > /data/pg/f && chown 1000:1000 /data/pg/f && chmod 600 /data/pg/f && stat -c '%u:%g %a' /data/pg/f && touch /data/new && stat -c %g /data/new"); code != 0 || out != "1000:1000 600\n2000" {
		t.Fatalf("non-root write and chown: %q (exit %d)", out, code)
	}
	// 8 MiB is the cap: 9 MiB does not fit.
	out, code := run(sb, 1000, "dd if=/dev/zero of=/data/big bs=1M count=9")
	if code == 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("9 MiB into an 8 MiB volume: exit %d, %q; want ENOSPC", code, out)
	}
	t.Logf("past the 8 MiB sizeLimit: exit %d, %q", code, lastLine(out))
	if _, code := run(sb, 1000, "rm /data/big"); code != 0 {
		t.Fatal("rm")
	}
	// A container restart keeps the volume.
	if err := sb.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if out, code := run(sb, 1000, "cat /data/pg/f"); code != 0 || out != "kept" {
		t.Fatalf("after a restart: %q (exit %d)", out, code)
	}
	if err := sb.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	// So does a new VM of the same container.
	sb2, err := rt.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb2.Delete(context.Background())
	if out, code := run(sb2, 1000, "cat /data/pg/f; stat -c '%a' /data"); code != 0 || out != "kept\n2777" {
		t.Fatalf("in a new VM: %q (exit %d)", out, code)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(disk, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("the 8 MiB volume image holds %d KiB on the host after 9 MiB written and removed", st.Blocks/2)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
