package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStartReadPidStop(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal("sleep(1) not in PATH: install coreutils")
	}
	sleep, _ = filepath.EvalSymlinks(sleep)
	dir := t.TempDir()
	spec := Spec{Name: "sleeper", Path: sleep, Args: []string{"300"}, Dir: dir, LogDir: dir, WorkDir: dir}
	pid, err := Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !Alive(pid) {
		t.Fatal("started process is not alive")
	}
	got, err := ReadPid(dir, "sleeper", sleep)
	if err != nil || got != pid {
		t.Fatalf("ReadPid = %d, %v; want %d", got, err, pid)
	}
	// A pid running another binary (reused pid) is not trusted.
	if got, _ := ReadPid(dir, "sleeper", "/bin/elsewhere"); got != 0 {
		t.Errorf("ReadPid trusted pid %d for the wrong binary", got)
	}
	// Same pid and binary but another start time: a reused pid, not ours.
	rec, _ := os.ReadFile(PidPath(dir, "sleeper"))
	if err := os.WriteFile(PidPath(dir, "sleeper"), []byte(strings.Fields(string(rec))[0]+" 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadPid(dir, "sleeper", sleep); got != 0 {
		t.Errorf("ReadPid trusted pid %d with the wrong start time", got)
	}
	start := time.Now()
	if err := Stop(pid, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if Alive(pid) || time.Since(start) > 4*time.Second {
		t.Errorf("sleep not stopped by SIGTERM promptly (alive=%v, %v)", Alive(pid), time.Since(start))
	}
	if got, _ := ReadPid(dir, "sleeper", sleep); got != 0 {
		t.Errorf("ReadPid = %d after stop", got)
	}
	log, _ := os.ReadFile(spec.LogPath())
	if !strings.HasPrefix(string(log), "# "+sleep+" 300") {
		t.Errorf("log does not start with the command line: %q", log)
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(p, []byte("a\nb\nc\nd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Tail(p, 2); got != "c\nd" {
		t.Errorf("Tail = %q", got)
	}
}
