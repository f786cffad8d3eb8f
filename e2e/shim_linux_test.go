package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A VM whose shim is the node binary (`vk-applevm shim --dir D`, what every
// VM ran before the shim had a binary of its own) is driven by a CLI that
// starts vk-applevm-shim for new VMs: the node and the shim share only the
// VM directory's files and sockets. New VMs get vk-applevm-shim from next
// to the node binary.
func TestVMOfNodeBinaryShimIsReattached(t *testing.T) {
	// The previous launch, exactly: the node binary's `shim` command.
	oldShim := filepath.Join(t.TempDir(), "node-binary-as-shim")
	if err := os.WriteFile(oldShim, []byte("#!/bin/sh\nexec "+env.bin+" shim \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := vkavCommand("run", "-d", "--name", "oldshim", env.busybox, "sh", "-c", "echo from the old shim; exec sleep 1000")
	cmd.Env = append(os.Environ(), "VKAV_SHIM_BINARY="+oldShim)
	out, err := cmd.Output()
	oldID := strings.TrimSpace(string(out))
	if err != nil || len(oldID) != 12 {
		t.Fatalf("run -d with the node binary as shim: %v, stdout %q", err, out)
	}
	t.Cleanup(func() { vkav(t, "", "rm", "-f", "oldshim") })
	if exe, args := shimProcess(t, oldID); exe != env.bin || !strings.Contains(args, " shim --dir ") {
		t.Fatalf("the first VM's shim is %s (%q), want %s shim --dir", exe, args, env.bin)
	}

	r := vkav(t, "", "run", "-d", "--name", "newshim", env.busybox, "sleep", "1000")
	t.Cleanup(func() { vkav(t, "", "rm", "-f", "newshim") })
	if r.code != 0 {
		t.Fatalf("run -d: %d %s", r.code, r.stderr)
	}
	want := filepath.Join(filepath.Dir(env.bin), "vk-applevm-shim")
	if exe, _ := shimProcess(t, strings.TrimSpace(r.stdout)); exe != want {
		t.Fatalf("a new VM's shim is %s, want %s", exe, want)
	}

	// This CLI re-attaches to the old shim: logs, exec, stop, rm.
	waitLogs(t, "oldshim", "from the old shim\n")
	if r := vkav(t, "", "exec", "oldshim", "sh", "-c", "echo reattached; exit 3"); r.code != 3 || r.stdout != "reattached\n" {
		t.Fatalf("exec through the old shim: code %d stdout %q", r.code, r.stdout)
	}
	if r := vkav(t, "", "stop", "-t", "5", "oldshim"); r.code != 0 {
		t.Fatalf("stop through the old shim: %d %s", r.code, r.stderr)
	}
	if r := vkav(t, "", "rm", "oldshim"); r.code != 0 {
		t.Fatalf("rm: %d %s", r.code, r.stderr)
	}
}

// shimProcess returns the executable and command line of a VM's shim, from
// the state the shim writes (vm/shim: state.json).
func shimProcess(t *testing.T, id string) (exe, cmdline string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.root, "vms", id, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		ShimPid int `json:"shimPid"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.ShimPid == 0 {
		t.Fatalf("state.json of %s: %v %s", id, err, b)
	}
	proc := filepath.Join("/proc", strconv.Itoa(st.ShimPid))
	if exe, err = os.Readlink(filepath.Join(proc, "exe")); err != nil {
		t.Fatal(err)
	}
	args, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return exe, strings.ReplaceAll(string(args), "\x00", " ")
}
