//go:build linux || darwin

package e2e

// The CLI end to end, the same cases on both hypervisors: each platform's
// harness (harness_linux_test.go: QEMU, the CLI in a test network
// namespace; harness_darwin_test.go: vz, the CLI run directly) provides
// env.busybox and env.registry, and
//
//	vkav(t, stdin, args...) result    run the CLI to completion
//	vkavCommand(args...) *exec.Cmd    the CLI as a command to start (a real terminal)
//	vmAddress(t, name) string         a container's VM address (its pod address)
//	publishAddress(t) (ip, port)      a host address and free port for -p
//	httpGetFromHost(url) (string, error)
//	listenForVM(t, name) net.Listener a server address on the host side the VM reaches
//	foreignPlatform(t) foreignCase    an image of another architecture than the VMs'

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/syncbuf"

	"github.com/creack/pty"
)

// result is one CLI invocation's outcome.
type result struct {
	stdout, stderr string
	code           int
}

// foreignCase is an image whose architecture differs from the guest's,
// and what running it must do here.
type foreignCase struct {
	ref, platform string
	// runs: the host translates the image (Rosetta), so its busybox
	// runs. Otherwise the run fails with exit code 125 and wantErr,
	// before any VM boots.
	runs    bool
	wantErr string
}

func TestRunEcho(t *testing.T) {
	r := vkav(t, "", "run", "--rm", env.busybox, "echo", "hello from a VM")
	if r.code != 0 || r.stdout != "hello from a VM\n" {
		t.Fatalf("code %d stdout %q", r.code, r.stdout)
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name, stdout string
		args         []string
		code         int
	}{
		{"exit 3", "", []string{"sh", "-c", "exit 3"}, 3},
		// The command is PID 1 of its container: the kernel drops signals
		// it has no handler for, sent from inside, as under Docker.
		{"PID 1 survives its own SIGKILL", "survived\n", []string{"sh", "-c", "kill -KILL $$; echo survived"}, 0},
		{"PID 1 survives its own SIGTERM", "survived\n", []string{"sh", "-c", "kill -TERM $$; echo survived"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := vkav(t, "", append([]string{"run", "--rm", env.busybox}, tc.args...)...)
			if r.code != tc.code || r.stdout != tc.stdout {
				t.Fatalf("exit code %d stdout %q, want %d %q", r.code, r.stdout, tc.code, tc.stdout)
			}
		})
	}
	// Killed by a signal, a process exits 128+N: see TestDetachedContainer
	// (exec'd processes are not the container's PID 1).
}

func TestRunEnvWorkdirUser(t *testing.T) {
	r := vkav(t, "", "run", "--rm", "-e", "GREETING=hi there", "-w", "/tmp/work", "-u", "1000:1000", env.busybox,
		"sh", "-c", `echo "$GREETING"; pwd; id -u; id -g; echo "$PATH"`)
	want := "hi there\n/tmp/work\n1000\n1000\n/usr/sbin:/usr/bin:/sbin:/bin\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d stdout %q, want %q", r.code, r.stdout, want)
	}
}

func TestRunStdinPiped(t *testing.T) {
	r := vkav(t, "line one\nline two\n", "run", "--rm", "-i", env.busybox, "sh", "-c", "tr a-z A-Z; echo done")
	if r.code != 0 || r.stdout != "LINE ONE\nLINE TWO\ndone\n" {
		t.Fatalf("code %d stdout %q", r.code, r.stdout)
	}
}

func TestRunCommandNotFound(t *testing.T) {
	r := vkav(t, "", "run", "--rm", env.busybox, "no-such-command")
	if r.code != 127 || !strings.Contains(r.stderr, "no-such-command") || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("code %d stderr %q, want 127 naming the command", r.code, r.stderr)
	}
	r = vkav(t, "", "run", "--rm", env.busybox, "/etc/passwd")
	if r.code != 126 {
		t.Fatalf("running a non-executable file: code %d, want 126 (stderr %q)", r.code, r.stderr)
	}
}

func TestRunImageNotFound(t *testing.T) {
	r := vkav(t, "", "run", "--rm", env.registry+"/no/such-image:1", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "not found") || !strings.Contains(r.stderr, "no/such-image") {
		t.Fatalf("code %d stderr %q, want 125 with a clear message", r.code, r.stderr)
	}
	if r := vkav(t, "", "ps", "-a"); strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("a failed run left a container behind:\n%s", r.stdout)
	}
}

// TestRunForeignPlatform: an image for another architecture than the VMs'
// runs only where the host translates it (Rosetta on Apple silicon);
// elsewhere it is refused before a VM boots.
func TestRunForeignPlatform(t *testing.T) {
	fc := foreignPlatform(t)
	vmsBefore := vmDirs(t)
	r := vkav(t, "", "run", "--rm", "--platform", fc.platform, fc.ref, "echo", "ran "+fc.platform)
	if fc.runs {
		if r.code != 0 || r.stdout != "ran "+fc.platform+"\n" {
			t.Fatalf("%s image: code %d stdout %q stderr %q, want it to run", fc.platform, r.code, r.stdout, r.stderr)
		}
		return
	}
	if r.code != 125 || !strings.Contains(r.stderr, fc.wantErr) {
		t.Fatalf("%s image: code %d stderr %q, want 125 saying %q", fc.platform, r.code, r.stderr, fc.wantErr)
	}
	if after := vmDirs(t); after != vmsBefore {
		t.Fatalf("a refused run made VM state: VM directories %q before, %q after", vmsBefore, after)
	}
}

// TestRunPlatformOfStoredImage: --platform names a platform the stored
// busybox is not for, so the image is pulled for it (and the registry has
// none) rather than the stored one run.
func TestRunPlatformOfStoredImage(t *testing.T) {
	if r := vkav(t, "", "images", "pull", env.busybox); r.code != 0 {
		t.Fatalf("pull: %d %s", r.code, r.stderr)
	}
	fc := foreignPlatform(t)
	r := vkav(t, "", "run", "--rm", "--platform", fc.platform, env.busybox, "echo", "ran the stored image")
	if r.code != 125 || !strings.Contains(r.stderr, "want "+fc.platform) {
		t.Fatalf("code %d stdout %q stderr %q, want 125: busybox has no %s variant", r.code, r.stdout, r.stderr, fc.platform)
	}
}

// vmDirs lists the VM directories under the CLI's state root.
func vmDirs(t *testing.T) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(env.root, "vms"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

func TestDetachedContainer(t *testing.T) {
	name := uniqueName("detached")
	r := vkav(t, "", "run", "-d", "--name", name, env.busybox, "sh", "-c", "echo started; echo to-stderr >&2; exec sleep 1000")
	if r.code != 0 || len(strings.TrimSpace(r.stdout)) != 12 {
		t.Fatalf("run -d: code %d stdout %q", r.code, r.stdout)
	}
	t.Cleanup(func() { vkav(t, "", "rm", "-f", name) })
	if r := vkav(t, "", "ps"); !strings.Contains(r.stdout, name) || !strings.Contains(r.stdout, "Up ") {
		t.Fatalf("ps does not show %s running:\n%s", name, r.stdout)
	}
	// stdout and stderr are two pipes read by two goroutines in the
	// guest, so their relative order in the log is the order of the reads,
	// as under Docker and containerd: only each stream's own order holds.
	waitLogLines(t, name, "started", "to-stderr")

	if r := vkav(t, "", "exec", name, "sh", "-c", "exit 5"); r.code != 5 {
		t.Fatalf("exec exit code %d, want 5", r.code)
	}
	for sig, code := range map[string]int{"KILL": 128 + 9, "TERM": 128 + 15} {
		if r := vkav(t, "", "exec", name, "sh", "-c", "kill -"+sig+" $$"); r.code != code {
			t.Fatalf("exec killed by SIG%s: exit code %d, want %d", sig, r.code, code)
		}
	}
	if r := vkav(t, "", "exec", "-t", name, "tty"); r.code != 0 || !strings.HasPrefix(r.stdout, "/dev/pts/") {
		t.Fatalf("exec -t: code %d stdout %q", r.code, r.stdout)
	}
	if r := vkav(t, "", "exec", name, "tty"); r.code == 0 {
		t.Fatalf("exec without -t has a terminal: %q", r.stdout)
	}
	// A real terminal on our side: its size reaches the guest, and a
	// resize is delivered.
	cmd := vkavCommand("exec", "-i", "-t", name, "sh", "-c", "stty size; while read x; do stty size; done")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 31, Cols: 97})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out syncBuffer
	done := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(done) }()
	waitOutput(t, &out, "31 97")
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	// The new size travels on its own (SIGWINCH to the CLI, a message to
	// the agent), unordered with our keystrokes: each line asks for the
	// size again until the guest has it, then ^D ends the loop.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out.String(), "50 120"); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("terminal resize not seen in the guest within a minute: %q", out.String())
		}
		fmt.Fprintln(ptmx)
	}
	ptmx.Write([]byte{4})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exec -it: %v; output %q", err, out.String())
	}
	<-done

	// stop sends SIGTERM, which sleep as the container's PID 1 does not
	// handle (the kernel shields a PID namespace's init, as under Docker);
	// SIGKILL follows after -t.
	if r := vkav(t, "", "stop", "-t", "5", name); r.code != 0 {
		t.Fatalf("stop: %d %s", r.code, r.stderr)
	}
	if r := vkav(t, "", "ps", "-a"); !strings.Contains(r.stdout, "Stopped") {
		t.Fatalf("ps -a after stop:\n%s", r.stdout)
	}
	if r := vkav(t, "", "rm", name); r.code != 0 {
		t.Fatalf("rm: %d %s", r.code, r.stderr)
	}
	if r := vkav(t, "", "ps", "-a"); strings.Contains(r.stdout, name) {
		t.Fatalf("rm left %s:\n%s", name, r.stdout)
	}
}

// TestNetwork: the VM has its own address, the host reaches it, and the VM
// reaches a server on the host side of the VM network (Linux: the test
// namespace's veth address, through the VM network's NAT; macOS: the vz
// NAT gateway).
func TestNetwork(t *testing.T) {
	name := uniqueName("web")
	hostIP, hostPort := publishAddress(t)
	publish := fmt.Sprintf("%s:%d:8080", hostIP, hostPort)
	r := vkav(t, "", "run", "-d", "--name", name, "-p", publish, env.busybox, "sh", "-c", "echo served-by-vm > /tmp/index.html; exec httpd -f -p 8080 -h /tmp")
	if r.code != 0 {
		t.Fatalf("run -d: %d %s", r.code, r.stderr)
	}
	t.Cleanup(func() { vkav(t, "", "rm", "-f", name) })
	ip := vmAddress(t, name)
	if ps := vkav(t, "", "ps"); !strings.Contains(ps.stdout, fmt.Sprintf("%s:%d->8080/tcp", hostIP, hostPort)) {
		t.Errorf("ps does not show the published port:\n%s", ps.stdout)
	}

	// Host → VM, through the published port.
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		body, err = httpGetFromHost("http://" + net.JoinHostPort(hostIP, fmt.Sprint(hostPort)) + "/index.html")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET from the host through -p %s: %v", publish, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if body != "200 OK served-by-vm\n" {
		t.Fatalf("body %q", body)
	}

	// VM → VM: another container reaches it at its address.
	r = vkav(t, "", "run", "--rm", env.busybox, "wget", "-q", "-O-", "http://"+net.JoinHostPort(ip, "8080")+"/index.html")
	if r.code != 0 || r.stdout != "served-by-vm\n" {
		t.Fatalf("VM → VM at %s: code %d stdout %q stderr %q", ip, r.code, r.stdout, r.stderr)
	}

	// VM → host.
	ln := listenForVM(t, name)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.RemoteAddr)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	r = vkav(t, "", "exec", name, "wget", "-q", "-O-", "http://"+ln.Addr().String()+"/")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "hello ") {
		t.Fatalf("VM → host: code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}

	// Removing the container withdraws the published port.
	vkav(t, "", "rm", "-f", name)
	if _, err := httpGetFromHost("http://" + net.JoinHostPort(hostIP, fmt.Sprint(hostPort)) + "/index.html"); err == nil {
		t.Error("the published port still answers after rm")
	}
}

// psAddress is a container's IP as `ps` shows it, "" if none.
func psAddress(t *testing.T, name string) string {
	t.Helper()
	r := vkav(t, "", "ps")
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[1] == name {
			for _, x := range f {
				if ip := net.ParseIP(x); ip != nil && ip.To4() != nil {
					return x
				}
			}
		}
	}
	return ""
}

func waitLogs(t *testing.T, name, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := vkav(t, "", "logs", name)
		if r.stdout == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs %q, want %q", r.stdout, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitLogLines waits until the container's log holds exactly these lines,
// in any order across streams.
func waitLogLines(t *testing.T, name string, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := vkav(t, "", "logs", name)
		got := slices.Sorted(slices.Values(strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")))
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs %q, want the lines %q", r.stdout, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// syncBuffer is safe for a writer and a poller.
type syncBuffer = syncbuf.Buffer

func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for !strings.Contains(b.String(), want) {
		if ctx.Err() != nil {
			t.Fatalf("output %q lacks %q", b.String(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCLIUsage: help everywhere exits 0; a wrong command line exits 125
// with one line saying what was wrong, before anything boots.
func TestCLIUsage(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"help", "exec"}} {
		if r := vkav(t, "", args...); r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	vmsBefore := vmDirs(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--bogus", env.busybox, "true"}, "unknown flag: --bogus"},
		{[]string{"run", "-it"}, "want an IMAGE"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		r := vkav(t, "", tc.args...)
		if r.code != 125 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 125 and one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if after := vmDirs(t); after != vmsBefore {
		t.Fatalf("a usage error left VMs: %s → %s", vmsBefore, after)
	}
}

// TestRunInteractiveTerminal: `run -it` on a real terminal, as people
// type it: a shell in the VM with a terminal, its exit code ours.
func TestRunInteractiveTerminal(t *testing.T) {
	cmd := vkavCommand("run", "-it", "--rm", env.busybox, "sh")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out syncBuffer
	done := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(done) }()
	fmt.Fprintln(ptmx, `echo "answer $((6*7))"; tty; stty size; exit 3`)
	waitOutput(t, &out, "answer 42")
	err = cmd.Wait()
	<-done
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("run -it exit %d (%v), want 3; output %q", code, err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "/dev/pts/") || !strings.Contains(s, "24 80") {
		t.Fatalf("no terminal of our size in the VM: %q", s)
	}
}

// TestRunVolumeEnvFileInspect: -v shares a host directory (read-only with
// :ro), --env-file sets variables, and ps --format json and inspect
// describe the container.
func TestRunVolumeEnvFileInspect(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# settings\nFROM_FILE=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	name := uniqueName("shared")
	r := vkav(t, "", "run", "-d", "--name", name, "-v", dir+":/data:ro", "--env-file", envFile, env.busybox,
		"sh", "-c", `echo "FROM_FILE=$FROM_FILE"; exec sleep 1000`)
	if r.code != 0 {
		t.Fatalf("run -d: %d %s", r.code, r.stderr)
	}
	t.Cleanup(func() { vkav(t, "", "rm", "-f", name) })
	waitLogs(t, name, "FROM_FILE=yes\n")
	if r := vkav(t, "", "exec", name, "sh", "-c", `cat /data/hello; touch /data/x 2>/dev/null && echo writable || echo read-only`); r.stdout != "from the host\nread-only\n" {
		t.Fatalf("exec: %d %q %q", r.code, r.stdout, r.stderr)
	}
	var ps []struct {
		ID, Name, Image, Status, IP string
	}
	r = vkav(t, "", "ps", "--format", "json")
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil {
		t.Fatalf("ps --format json: %v: %q", err, r.stdout)
	}
	found := false
	for _, c := range ps {
		found = found || c.Name == name && strings.HasPrefix(c.Status, "Up") && c.Image == env.busybox && c.IP != ""
	}
	if !found {
		t.Fatalf("ps --format json lacks %s running: %+v", name, ps)
	}
	var inspect []struct {
		Name   string `json:"name"`
		Config struct {
			Mounts []struct {
				HostPath    string `json:"hostPath"`
				Destination string `json:"destination"`
				ReadOnly    bool   `json:"readOnly"`
			} `json:"mounts"`
		} `json:"config"`
	}
	r = vkav(t, "", "inspect", name)
	if err := json.Unmarshal([]byte(r.stdout), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("inspect: %v: %q", err, r.stdout)
	}
	if m := inspect[0].Config.Mounts; len(m) != 1 || m[0].HostPath != dir || m[0].Destination != "/data" || !m[0].ReadOnly {
		t.Fatalf("inspect mounts: %+v", m)
	}
}

// TestRunAnonymousVolume: -v /data alone is a disk of the container's own,
// as a single-container pod's emptyDir is: root chowns a file on it to
// another uid (what vz's single-uid virtio-fs shares refuse), its image
// lives in the container's state directory, and `rm` (or `run --rm`)
// leaves nothing of it under the state root.
func TestRunAnonymousVolume(t *testing.T) {
	const script = "touch /data/f && chown 1000:1000 /data/f && stat -c %u:%g /data/f"
	r := vkav(t, "", "run", "--rm", "-v", "/data", env.busybox, "sh", "-c", script)
	if r.code != 0 || r.stdout != "1000:1000\n" {
		t.Fatalf("run --rm -v /data: code %d stdout %q, want 1000:1000", r.code, r.stdout)
	}
	if left := volumeImages(t); len(left) > 0 {
		t.Fatalf("run --rm left volume images: %q", left)
	}

	name := uniqueName("anonvol")
	r = vkav(t, "", "run", "--name", name, "-v", "/data", env.busybox, "sh", "-c", script)
	t.Cleanup(func() { vkav(t, "", "rm", "-f", name) })
	if r.code != 0 || r.stdout != "1000:1000\n" {
		t.Fatalf("run -v /data: code %d stdout %q, want 1000:1000", r.code, r.stdout)
	}
	var inspect []struct {
		Config struct {
			Mounts []struct {
				Kind        string `json:"kind"`
				HostPath    string `json:"hostPath"`
				Destination string `json:"destination"`
			} `json:"mounts"`
		} `json:"config"`
	}
	r = vkav(t, "", "inspect", name)
	if err := json.Unmarshal([]byte(r.stdout), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("inspect: %v: %q", err, r.stdout)
	}
	m := inspect[0].Config.Mounts
	if len(m) != 1 || m[0].Kind != "disk" || m[0].Destination != "/data" {
		t.Fatalf("inspect mounts: %+v, want one disk at /data", m)
	}
	if left := volumeImages(t); len(left) != 1 || left[0] != m[0].HostPath {
		t.Fatalf("volume images under the state root: %q, want the container's %s", left, m[0].HostPath)
	}
	fi, err := os.Stat(m[0].HostPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 10<<30 {
		t.Fatalf("volume image %s is %d bytes, want the documented default of 10 GiB", m[0].HostPath, fi.Size())
	}
	if r := vkav(t, "", "rm", name); r.code != 0 {
		t.Fatalf("rm: %d %s", r.code, r.stderr)
	}
	if left := volumeImages(t); len(left) > 0 {
		t.Fatalf("rm left volume images: %q", left)
	}
}

// volumeImages lists the files in VMs' volumes directories under the
// CLI's state root.
func volumeImages(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(env.root, "vms"), func(p string, d os.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && filepath.Base(filepath.Dir(p)) == "volumes" {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
