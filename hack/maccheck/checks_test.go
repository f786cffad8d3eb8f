package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeCLI stands in for vk-applevm in the logic test of the checks: it
// answers each command the checks run as a working node would, from a
// state directory ($FAKE_DIR); $FAKE_BREAK names one behaviour to break.
// The real CLI and VMs run in `make mac-check`, which make test runs.
const fakeCLI = `#!/bin/sh
shift 4 # --root R --guest G
case "$1" in
images) exit 0 ;;
run)
	case "$*" in
	*maccheck-a*)
		# chown works on an anonymous volume (a disk) only, as on vz.
		case " $* " in *" -v /data "*) touch "$FAKE_DIR/disk" ;; esac
		echo "$*" | grep -o 'maccheck-[0-9a-f]*' | grep -v '^maccheck-a$' | head -1 >"$FAKE_DIR/nonce"
		echo ready
		while [ ! -f "$FAKE_DIR/stop" ]; do sleep 0.05; done
		[ "$FAKE_BREAK" = stop ] && exit 137
		echo got TERM; exit 143 ;;
	*maccheck-b*) [ "$FAKE_BREAK" = net ] || cat "$FAKE_DIR/nonce"; exit 7 ;;
	esac ;;
exec)
	case "$*" in
	*"-u 999:999"*) cat "$FAKE_DIR/nonce" ;;
	*"echo maccheck-"*) echo "$4" ;;
	*chown*) [ "$FAKE_BREAK" = chown ] || [ ! -f "$FAKE_DIR/disk" ] && { echo "chown: /data/db: Operation not permitted" >&2; exit 1; }; echo 999:999 ;;
	esac ;;
ps)
	case "$*" in
	*-a*) echo '[]' ;;
	*) echo '[{"name": "maccheck-a", "ip": "10.213.0.2"}]' ;;
	esac ;;
stop) touch "$FAKE_DIR/stop" ;;
rm) [ "$FAKE_BREAK" = leftover ] && mkdir -p "$FAKE_DIR/vms/0123456789ab"; exit 0 ;;
*) echo "fake: $*" >&2; exit 125 ;;
esac
`

func runFake(t *testing.T, breaks string) *Report {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "vk-applevm")
	if err := os.WriteFile(bin, []byte(fakeCLI), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_DIR", dir)
	t.Setenv("FAKE_BREAK", breaks)
	var log bytes.Buffer
	rep := &Report{}
	c := &checker{
		s:   &session{bin: bin, guestDir: dir, root: dir, log: &log},
		rep: rep, image: "127.0.0.1:5000/busybox:maccheck", nonce: "maccheck-0123abcd",
	}
	ctx := context.Background()
	c.runVMChecks(ctx)
	c.rosetta(ctx)
	c.cleanup(ctx)
	t.Logf("commands:\n%s", log.String())
	return rep
}

func verdicts(rep *Report) map[string]Status {
	m := map[string]Status{}
	for _, c := range rep.Checks {
		m[c.Name] = c.Status
	}
	return m
}

// TestChecksAgainstAWorkingCLI: every check passes when the CLI answers
// as it should, in the table's order.
func TestChecksAgainstAWorkingCLI(t *testing.T) {
	rep := runFake(t, "")
	var names []string
	for _, c := range rep.Checks {
		names = append(names, c.Name)
		want := Pass
		if c.Name == checkRosetta && runtime.GOOS != "darwin" {
			want = NotApplicable
		}
		if c.Status != want {
			t.Errorf("%s: %s (%s), want %s", c.Name, c.Status, c.Detail, want)
		}
	}
	want := []string{checkBoot, checkAgent, checkExitCode, checkVMToVM, checkChown, checkStop, checkRosetta, checkCleanup}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("checks %q, want %q", names, want)
	}
}

// TestChecksFailOneByOne: a broken behaviour fails its own check and no
// other.
func TestChecksFailOneByOne(t *testing.T) {
	for breaks, check := range map[string]string{"chown": checkChown, "net": checkVMToVM, "stop": checkStop, "leftover": checkCleanup} {
		t.Run(breaks, func(t *testing.T) {
			rep := runFake(t, breaks)
			for name, st := range verdicts(rep) {
				if (name == check) != (st == Fail) {
					t.Errorf("with %s broken: %s is %s", breaks, name, st)
				}
			}
			if !rep.Failed() {
				t.Error("the report does not fail")
			}
		})
	}
}
