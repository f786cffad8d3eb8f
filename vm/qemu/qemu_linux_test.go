package qemu

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

func TestBootToReadyThenPowerOff(t *testing.T) {
	t.Parallel()
	b := floorBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	spec := floorSpec(t, b, "")
	m := startVM(ctx, t, testDriver(t), spec)
	if got := readLines(ctx, t, m, "ready"); strings.Join(got, "|") != "ready" {
		t.Fatalf("agent port said %q, want ready", got)
	}
	waitDone(ctx, t, m)
	if err := m.Err(); err != nil {
		t.Fatalf("a guest power-off ended with %v, want nil", err)
	}
	log, err := os.ReadFile(spec.ConsoleLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "Linux version "+b.KernelRelease) {
		t.Fatalf("console log lacks the Linux banner:\n%s", log)
	}
}

func TestRequestStopPressesPowerButton(t *testing.T) {
	t.Parallel()
	b := floorBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	spec := floorSpec(t, b, "wait")
	m := startVM(ctx, t, testDriver(t), spec)
	r, _ := openPort(ctx, t, m)
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("agent port: %q, %v", line, err)
	}
	// Guest RAM without transparent huge pages (thp_linux.go says why).
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.Pid()))
	if err != nil || !strings.Contains(string(status), "THP_enabled:\t0") {
		t.Errorf("QEMU's THP_enabled is not 0 (%v):\n%s", err, status)
	}
	if err := m.RequestStop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-ctx.Done():
		console, _ := os.ReadFile(spec.ConsoleLog)
		t.Fatalf("the guest ignored the power button: %v\n%s", ctx.Err(), console)
	}
	if err := m.Err(); err != nil {
		t.Fatalf("stop by power button ended with %v, want nil", err)
	}
}

func TestKillStopsAtOnce(t *testing.T) {
	t.Parallel()
	b := floorBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	m := startVM(ctx, t, testDriver(t), floorSpec(t, b, "wait"))
	r, _ := openPort(ctx, t, m)
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("agent port: %q, %v", line, err)
	}
	pid := m.Pid()
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	waitDone(ctx, t, m)
	if !errors.Is(m.Err(), ErrKilled) {
		t.Fatalf("Err after Kill = %v, want ErrKilled", m.Err())
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("qemu pid %d still exists after Kill (kill -0: %v)", pid, err)
	}
	if err := m.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
}

func TestGuestPanicIsAnError(t *testing.T) {
	t.Parallel()
	b := floorBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	spec := floorSpec(t, b, "")
	spec.Cmdline = "rdinit=/no/such/init" // the kernel panics: no working init
	m := startVM(ctx, t, testDriver(t), spec)
	waitDone(ctx, t, m)
	if !errors.Is(m.Err(), ErrGuestReset) {
		t.Fatalf("Err after a guest panic = %v, want ErrGuestReset", m.Err())
	}
}

// TestDevicesReachTheGuest checks disks by serial (read-only and writable)
// and a tap NIC opened inside a network namespace the test creates.
func TestDevicesReachTheGuest(t *testing.T) {
	t.Parallel()
	b := floorBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	dir := t.TempDir()
	spec := floorSpec(t, b, "serials")
	for _, d := range []vm.Disk{{Serial: vm.DiskRootfs, ReadOnly: true}, {Serial: vm.DiskScratch}} {
		d.Path = filepath.Join(dir, d.Serial+".img")
		if err := os.WriteFile(d.Path, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		spec.Disks = append(spec.Disks, d)
	}
	ns := testNetns(t)
	run(t, "ip", "-n", ns, "tuntap", "add", "dev", "vkavtap0", "mode", "tap")
	const mac = "02:76:6b:61:76:01"
	spec.NICs = []vm.NIC{{MAC: mac, Attachment: vm.Attachment{Kind: vm.AttachTap, Tap: "vkavtap0", Netns: "/run/netns/" + ns}}}

	m := startVM(ctx, t, testDriver(t), spec)
	got := strings.Join(readLines(ctx, t, m, "done"), "\n")
	want := "ready\nserial vda vkav-rootfs\nserial vdb vkav-scratch\nmac eth0 " + mac + "\ndone"
	if got != want {
		t.Fatalf("guest reported:\n%s\nwant:\n%s", got, want)
	}
	waitDone(ctx, t, m)
	if _, err := net.InterfaceByName("vkavtap0"); err == nil {
		t.Fatal("the tap showed up in the test's own namespace")
	}
}

func TestMissingTapIsAnError(t *testing.T) {
	ns := testNetns(t)
	_, err := openTap("/run/netns/"+ns, "vkavnosuch0", true)
	if err == nil || !strings.Contains(err.Error(), "vkavnosuch0") {
		t.Fatalf("opening a missing tap: %v, want an error naming it", err)
	}
	// TUNSETIFF would have created it; the namespace must still lack it.
	out, _ := exec.Command("ip", "-n", ns, "link", "show", "vkavnosuch0").CombinedOutput()
	if !strings.Contains(string(out), "does not exist") {
		t.Fatalf("ip link show after a failed open: %s", out)
	}
}

func TestTwoMachinesAtOnce(t *testing.T) {
	t.Parallel()
	b := floorBundle(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	d := testDriver(t)
	m1 := startVM(ctx, t, d, floorSpec(t, b, "wait"))
	m2 := startVM(ctx, t, d, floorSpec(t, b, "wait"))
	if m1.Pid() == m2.Pid() {
		t.Fatal("two machines share one QEMU")
	}
	for i, m := range []vm.Machine{m1, m2} {
		r, w := openPort(ctx, t, m)
		if line, err := r.ReadString('\n'); line != "ready\n" {
			t.Fatalf("machine %d: %q, %v", i, line, err)
		}
		if _, err := w.Write([]byte("poweroff\n")); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []vm.Machine{m1, m2} {
		waitDone(ctx, t, m)
		if err := m.Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// helperEnv makes the test binary act as a shim: start a machine with a
// share, print the pids of QEMU and virtiofsd, then wait to be killed.
const helperEnv = "VKAV_QEMU_TEST_SHIM"

func runShimHelper() {
	var spec vm.Spec
	parts := strings.SplitN(os.Getenv(helperEnv), "|", 3)
	share := filepath.Join(parts[2], "share")
	os.Mkdir(share, 0o755)
	spec = vm.Spec{ID: "shimhelper", Arch: "amd64", Kernel: parts[0], Initrd: parts[1], CPUs: 1, MemoryMiB: 256,
		Cmdline: "vkavfloor=wait", Ports: []string{vm.AgentPort}, ConsoleLog: filepath.Join(parts[2], "console.log"),
		Shares: []vm.Share{{Tag: "s", HostPath: share, ReadOnly: true}}}
	m, err := New(Options{Logger: testLogger}).Start(context.Background(), spec, parts[2])
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pid", m.Pid(), m.(*machine).virtiofsds[0].cmd.Process.Pid)
	// Keep the runtime busy creating and retiring threads: Pdeathsig must
	// follow the shim, not whichever thread forked QEMU.
	for {
		go func() { syscall.Getpid() }()
		time.Sleep(time.Millisecond)
	}
}

func TestQEMUDiesWithItsShim(t *testing.T) {
	t.Parallel()
	b := floorBundle(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+b.Kernel+"|"+b.FloorInitrd+"|"+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	var pid, fsPid int
	if n, err := fmt.Sscanf(line, "pid %d %d\n", &pid, &fsPid); n != 2 {
		cmd.Process.Kill()
		t.Fatalf("shim helper said %q (%v)", line, err)
	}
	for what, p := range map[string]int{"qemu": pid, "virtiofsd": fsPid} {
		if !alive(p) {
			t.Fatalf("%s %d is not running under the shim", what, p)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for what, p := range map[string]int{"qemu": pid, "virtiofsd": fsPid} {
		for alive(p) {
			if time.Now().After(deadline) {
				syscall.Kill(p, syscall.SIGKILL)
				t.Fatalf("%s %d outlived its shim by 10 s", what, p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// alive is false for a missing process and for a zombie (dead, unreaped).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

// testNetns creates a named network namespace for one test.
func testNetns(t testing.TB) string {
	t.Helper()
	testenv.NeedsRoot(t, "a network namespace")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("iproute2 is needed: apt-get install iproute2 (%v)", err)
	}
	name := fmt.Sprintf("vkavq%d", vmCounter.Add(1)+int32(os.Getpid()%10000)*100)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
