package binfmt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// sandboxEnv names the directory the test works in when it runs as the
// child in its own user namespace.
const sandboxEnv = "VKAV_BINFMT_SANDBOX"

// Since Linux 6.7 every user namespace can mount its own binfmt_misc
// instance, so the test registers for real without touching the machine's
// handlers: it re-runs itself in a new user and mount namespace.
func TestRegisterInUserNamespace(t *testing.T) {
	if dir := os.Getenv(sandboxEnv); dir != "" {
		registerInSandbox(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRegisterInUserNamespace$", "-test.v")
	cmd.Env = append(os.Environ(), sandboxEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the sandboxed run failed: %v\n%s\n(it needs Linux 6.7 or later, for binfmt_misc in user "+
			"namespaces, and user namespaces allowed: sysctl kernel.unprivileged_userns_clone=1 where that exists)", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestRegisterInUserNamespace")) {
		t.Fatalf("the sandboxed run did not pass:\n%s", out)
	}
	t.Logf("sandboxed run:\n%s", out)
}

func registerInSandbox(t *testing.T, dir string) {
	mnt := filepath.Join(dir, "binfmt_misc")
	// A binary, not a script: a script's own interpreter would be handed
	// the script's path, which the F check below removes.
	echo, err := exec.LookPath("echo")
	if err != nil {
		t.Fatalf("no echo binary: %v (apt-get install coreutils)", err)
	}
	data, err := os.ReadFile(echo)
	if err != nil {
		t.Fatal(err)
	}
	interp := filepath.Join(dir, "interp")
	writeFile(t, interp, string(data), 0o755)

	reg := Registration{Name: "vkav-test", Magic: []byte("VKAVTEST"), Interpreter: interp, Flags: "F"}
	if err := Register(mnt, reg); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if err := Register(mnt, reg); err != nil {
		t.Fatalf("Register again (must be a no-op): %v", err)
	}
	// F: the kernel opened the interpreter at registration, so it keeps
	// working after the file is gone (as Rosetta does for processes
	// chrooted into a container's root filesystem).
	if err := os.Remove(interp); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "prog")
	writeFile(t, prog, "VKAVTEST and then anything", 0o755)
	out, err := exec.Command(prog, "one", "two").CombinedOutput()
	if err != nil {
		t.Fatalf("running a file with the registered magic: %v: %s", err, out)
	}
	if want := prog + " one two\n"; string(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}

	// The Rosetta registration as the agent writes it: the kernel accepts
	// it and reads back the same magic, mask and flags. (Nothing x86-64 is
	// run afterwards: every binary here would go to the fake interpreter.)
	rosettaBin := filepath.Join(dir, "rosetta")
	writeFile(t, rosettaBin, "not really rosetta", 0o755)
	r := Rosetta(rosettaBin)
	if err := Register(mnt, r); err != nil {
		t.Fatalf("Register(Rosetta): %v", err)
	}
	status, err := os.ReadFile(filepath.Join(mnt, "rosetta"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"enabled\n",
		"interpreter " + rosettaBin + "\n",
		"flags: OCF\n", // C implies O (binfmt-misc.rst)
		"magic " + hex.EncodeToString(r.Magic) + "\n",
		"mask " + hex.EncodeToString(r.Mask) + "\n",
	} {
		if !strings.Contains(string(status), want) {
			t.Errorf("kernel's view of the rosetta entry lacks %q:\n%s", want, status)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "rosetta"), []byte("-1"), 0); err != nil {
		t.Errorf("remove the rosetta entry: %v", err)
	}
}

func TestRegisterRejectsInvalidBeforeMounting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-created")
	err := Register(dir, Registration{Name: "bad/name", Magic: []byte("x"), Interpreter: "/x"})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err %v, want ErrInvalid", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an invalid registration touched %s (%v)", dir, err)
	}
}

func writeFile(t *testing.T, name, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), perm); err != nil {
		t.Fatal(fmt.Errorf("write %s: %w", name, err))
	}
}
