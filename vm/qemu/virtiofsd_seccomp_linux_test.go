package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/internal/testenv"
)

// TestSetuidFilterReachesTheChild: a process started from the thread that
// loaded the filter cannot set the setuid bit by chmod or at creation,
// and can still chmod otherwise and create files (what virtiofsd needs).
func TestSetuidFilterReachesTheChild(t *testing.T) {
	testenv.NeedsRoot(t, "loading a seccomp filter without no_new_privs")
	dir := t.TempDir()
	script := `cd "$1"; touch f && chmod 0755 f && echo chmod-ok
chmod u+s f 2>&1 || true
VKAV_TEST_CREATE_SETUID=g "$2" 2>&1 || true
stat -c %A f`
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	onOwnThread(func() {
		if err := refuseSetuidOnThisThread(); err != nil {
			done <- result{err: err}
			return
		}
		out, err := exec.Command("sh", "-c", script, "sh", dir, os.Args[0]).CombinedOutput()
		done <- result{out, err}
	})
	r := <-done
	if r.err != nil {
		t.Fatalf("%v: %s", r.err, r.out)
	}
	want := "chmod-ok\nchmod: changing permissions of 'f': Operation not permitted\ncreate g 04755: operation not permitted\n-rwxr-xr-x\n"
	if string(r.out) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", r.out, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "g")); !os.IsNotExist(err) {
		t.Errorf("a setuid file was created: %v", err)
	}
	// The test's own threads are not filtered.
	if err := os.WriteFile(filepath.Join(dir, "h"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "h"), 0o4755); err != nil {
		t.Fatalf("the filter leaked to the test's own threads: %v", err)
	}
}

// createSetuidEnv makes the test binary create the file it names with
// mode 04755 (open(2)'s mode, not a later chmod) and exit.
const createSetuidEnv = "VKAV_TEST_CREATE_SETUID"

func createSetuid(path string) {
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o4755)
	if err != nil {
		fmt.Printf("create %s 04755: %v\n", path, err)
		os.Exit(1)
	}
	unix.Close(fd)
	os.Exit(0)
}
