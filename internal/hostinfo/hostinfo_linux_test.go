package hostinfo

import (
	"github.com/vk-applevm/vk-applevm/internal/testenv"

	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// run runs a real command and returns its trimmed output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestMemoryMatchesSysinfo(t *testing.T) {
	m, err := ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	// MemTotal is totalram in kB: the same number, two interfaces.
	if want := uint64(si.Totalram) * uint64(si.Unit); m.TotalBytes != want {
		t.Errorf("TotalBytes = %d, sysinfo says %d", m.TotalBytes, want)
	}
	if m.AvailableBytes == 0 || m.AvailableBytes > m.TotalBytes {
		t.Errorf("AvailableBytes = %d of %d", m.AvailableBytes, m.TotalBytes)
	}
}

func TestCPUCountMatchesNproc(t *testing.T) {
	n, err := strconv.Atoi(run(t, "nproc"))
	if err != nil {
		t.Fatal(err)
	}
	if CPUCount() != n {
		t.Fatalf("CPUCount = %d, nproc = %d", CPUCount(), n)
	}
}

func ownCPU(t *testing.T) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestCPUTimeCountsOurBusyLoop(t *testing.T) {
	host0, err := CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	own0 := ownCPU(t)
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	own := ownCPU(t) - own0
	host1, err := CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	// The host's busy time includes ours; tick sampling (10 ms) blurs
	// it, hence half.
	if d := host1 - host0; d < own/2 {
		t.Fatalf("host CPU time grew %v while this process alone used %v (loop %d)", d, own, x)
	}
}

func TestBootTimeMatchesUptime(t *testing.T) {
	bt, err := BootTime()
	if err != nil {
		t.Fatal(err)
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	want := time.Now().Add(-time.Duration(si.Uptime) * time.Second)
	if d := bt.Sub(want); d > 2*time.Second || d < -2*time.Second {
		t.Fatalf("BootTime = %v, now - uptime = %v", bt, want)
	}
}

func TestDiskMatchesDf(t *testing.T) {
	dir := t.TempDir()
	d, err := ReadDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.Split(run(t, "df", "-B1", "--output=size,avail", dir), "\n")[1])
	size, _ := strconv.ParseUint(f[0], 10, 64)
	avail, _ := strconv.ParseUint(f[1], 10, 64)
	if d.TotalBytes != size {
		t.Errorf("TotalBytes = %d, df size = %d", d.TotalBytes, size)
	}
	// Other writers may change free space between the two reads.
	if diff := int64(d.FreeBytes) - int64(avail); diff > 64<<20 || diff < -64<<20 {
		t.Errorf("FreeBytes = %d, df avail = %d", d.FreeBytes, avail)
	}
	if d.UsedBytes == 0 || d.UsedBytes > d.TotalBytes || d.Inodes == 0 {
		t.Errorf("disk = %+v", d)
	}
	if _, err := ReadDisk(dir + "/missing"); err == nil {
		t.Error("ReadDisk of a missing path succeeded")
	}
}

func TestOSMatchesUnameAndOSRelease(t *testing.T) {
	o, err := ReadOS()
	if err != nil {
		t.Fatal(err)
	}
	if want := run(t, "uname", "-r"); o.KernelVersion != want {
		t.Errorf("KernelVersion = %q, uname -r = %q", o.KernelVersion, want)
	}
	if want := run(t, "sh", "-c", ". /etc/os-release && echo \"$PRETTY_NAME\""); o.Image != want {
		t.Errorf("Image = %q, os-release PRETTY_NAME = %q", o.Image, want)
	}
	if o.Arch != runtime.GOARCH {
		t.Errorf("Arch = %q", o.Arch)
	}
	if len(o.BootID) != 36 || strings.Count(o.BootID, "-") != 4 {
		t.Errorf("BootID = %q, want a UUID", o.BootID)
	}
}

func TestNodeIPsOfLoopback(t *testing.T) {
	ips, err := NodeIPs("lo")
	if err != nil {
		t.Fatal(err)
	}
	if !ips[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("NodeIPs(lo) = %v, want 127.0.0.1 first", ips)
	}
	if _, err := NodeIPs("vkav-no-such-if"); err == nil {
		t.Fatal("NodeIPs of a missing interface succeeded")
	}
}

var netnsSeq int

// inNetns creates a network namespace with a veth pair set up by script
// (ip commands run with -n <ns>) and runs fn on a thread inside it.
func inNetns(t *testing.T, script [][]string, fn func()) {
	t.Helper()
	testenv.Needs(t, "root (network namespaces)")
	if os.Geteuid() != 0 {
		t.Fatal("this test creates network namespaces: run it as root (sudo go test)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("this test needs the ip command: apt-get install iproute2")
	}
	netnsSeq++
	ns := fmt.Sprintf("vkavhi%d-%d", os.Getpid()%100000, netnsSeq)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range script {
		run(t, "ip", append([]string{"-n", ns}, args...)...)
	}
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			return
		}
		fn()
		// A thread that cannot return to its namespace stays locked and
		// dies with the goroutine.
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
}

func TestDefaultRouteInterfaceInNetns(t *testing.T) {
	setup := [][]string{
		{"link", "add", "vkav0", "type", "veth", "peer", "name", "vkav1"},
		{"link", "add", "vkav2", "type", "veth", "peer", "name", "vkav3"},
		{"addr", "add", "10.201.77.2/24", "dev", "vkav0"},
		{"addr", "add", "10.201.78.2/24", "dev", "vkav2"},
		{"-6", "addr", "add", "fd77::2/64", "dev", "vkav0", "nodad"},
		{"link", "set", "vkav0", "up"}, {"link", "set", "vkav1", "up"},
		{"link", "set", "vkav2", "up"}, {"link", "set", "vkav3", "up"},
		// Two defaults: the lower metric (vkav0) wins.
		{"route", "add", "default", "dev", "vkav2", "metric", "200"},
		{"route", "add", "default", "dev", "vkav0", "metric", "100"},
	}
	inNetns(t, setup, func() {
		name, err := DefaultInterface()
		if err != nil || name != "vkav0" {
			t.Errorf("DefaultInterface = %q, %v; want vkav0", name, err)
		}
		ips, err := NodeIPs("")
		if err != nil {
			t.Error(err)
			return
		}
		if len(ips) != 2 || ips[0].String() != "10.201.77.2" || ips[1].String() != "fd77::2" {
			t.Errorf("NodeIPs = %v, want [10.201.77.2 fd77::2]", ips)
		}
	})
}

func TestIPv6OnlyDefaultRouteInNetns(t *testing.T) {
	setup := [][]string{
		{"link", "add", "vkav0", "type", "veth", "peer", "name", "vkav1"},
		{"-6", "addr", "add", "fd78::5/64", "dev", "vkav0", "nodad"},
		{"link", "set", "vkav0", "up"}, {"link", "set", "vkav1", "up"},
		{"-6", "route", "add", "default", "dev", "vkav0"},
	}
	inNetns(t, setup, func() {
		ips, err := NodeIPs("")
		if err != nil || len(ips) != 1 || ips[0].String() != "fd78::5" {
			t.Errorf("NodeIPs = %v, %v; want [fd78::5]", ips, err)
		}
	})
}

func TestNoDefaultRouteInNetns(t *testing.T) {
	inNetns(t, [][]string{{"link", "set", "lo", "up"}}, func() {
		if name, err := DefaultInterface(); err == nil {
			t.Errorf("DefaultInterface = %q without any default route", name)
		}
	})
}
