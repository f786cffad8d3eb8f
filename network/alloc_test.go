package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment of the helper process that TestAllocatorAcrossProcesses
// starts from this test binary.
const (
	helperDirEnv    = "VKAV_ALLOC_HELPER_DIR"
	helperPrefixEnv = "VKAV_ALLOC_HELPER_PREFIX"
	helperCountEnv  = "VKAV_ALLOC_HELPER_COUNT"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperDirEnv); dir != "" {
		os.Exit(allocHelper(dir))
	}
	os.Exit(m.Run())
}

// allocHelper acquires COUNT addresses for PREFIX-<i> and prints them.
func allocHelper(dir string) int {
	count, _ := strconv.Atoi(os.Getenv(helperCountEnv))
	a, err := NewAllocator(dir, netip.MustParsePrefix("10.50.0.0/22"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range count {
		addr, err := a.Acquire(ctx, fmt.Sprintf("%s-%d", os.Getenv(helperPrefixEnv), i))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(addr)
	}
	return 0
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAllocatorIdempotentAndPersistent(t *testing.T) {
	ctx, dir := ctxT(t), t.TempDir()
	subnet := netip.MustParsePrefix("10.50.0.0/24")
	a, err := NewAllocator(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	a1, err := a.Acquire(ctx, "aaa")
	if err != nil {
		t.Fatal(err)
	}
	b1, err := a.Acquire(ctx, "bbb")
	if err != nil {
		t.Fatal(err)
	}
	if a1 == b1 || !subnet.Contains(a1) || !subnet.Contains(b1) {
		t.Fatalf("leases %v, %v: want two distinct addresses in %v", a1, b1, subnet)
	}
	for _, addr := range []netip.Addr{a1, b1} {
		if addr == Gateway(subnet) || addr == subnet.Addr() || addr == broadcast(subnet) {
			t.Errorf("leased %v: network, gateway and broadcast addresses are reserved", addr)
		}
	}
	if again, err := a.Acquire(ctx, "aaa"); err != nil || again != a1 {
		t.Errorf("second Acquire(aaa) = %v, %v; want %v", again, err, a1)
	}
	// A new allocator on the same directory is a restarted node.
	restarted, err := NewAllocator(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := restarted.Acquire(ctx, "bbb"); err != nil || again != b1 {
		t.Errorf("Acquire(bbb) after restart = %v, %v; want %v", again, err, b1)
	}
	leases, err := restarted.Leases(ctx)
	if err != nil || len(leases) != 2 || leases["aaa"] != a1 {
		t.Errorf("Leases after restart = %v, %v; want aaa=%v bbb=%v", leases, err, a1, b1)
	}
}

func TestAllocatorReleaseRotationExhaustion(t *testing.T) {
	ctx := ctxT(t)
	// A /29: .0 network, .1 gateway, .7 broadcast, .2-.6 for VMs.
	a, err := NewAllocator(t.TempDir(), netip.MustParsePrefix("10.50.1.0/29"))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := a.Acquire(ctx, "first")
	if want := netip.MustParseAddr("10.50.1.2"); first != want {
		t.Fatalf("first lease %v, want %v", first, want)
	}
	if err := a.Release(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	// Freed addresses are not reused at once.
	if next, _ := a.Acquire(ctx, "second"); next != netip.MustParseAddr("10.50.1.3") {
		t.Errorf("lease after releasing .2 = %v, want 10.50.1.3 (rotation)", next)
	}
	for _, id := range []string{"c", "d", "e", "f"} {
		if _, err := a.Acquire(ctx, id); err != nil {
			t.Fatalf("Acquire(%s): %v", id, err)
		}
	}
	if addr, err := a.Acquire(ctx, "g"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Acquire on a full /29 = %v, %v; want ErrExhausted", addr, err)
	}
	if err := a.Release(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, "never-leased"); err != nil {
		t.Errorf("Release of an unknown id: %v", err)
	}
	leases, _ := a.Leases(ctx)
	freed := netip.Addr{}
	for _, addr := range []string{"10.50.1.2", "10.50.1.3", "10.50.1.4", "10.50.1.5", "10.50.1.6"} {
		taken := false
		for _, l := range leases {
			taken = taken || l == netip.MustParseAddr(addr)
		}
		if !taken {
			freed = netip.MustParseAddr(addr)
		}
	}
	if got, err := a.Acquire(ctx, "g"); err != nil || got != freed {
		t.Errorf("Acquire after Release(d) = %v, %v; want the freed %v", got, err, freed)
	}
}

func TestAllocatorUpdateErrorDiscardsChanges(t *testing.T) {
	ctx := ctxT(t)
	a, _ := NewAllocator(t.TempDir(), netip.MustParsePrefix("10.50.2.0/24"))
	boom := errors.New("tap creation failed")
	err := a.Update(ctx, func(l *Leases) error {
		if _, err := l.Acquire("vm1"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want %v", err, boom)
	}
	if leases, _ := a.Leases(ctx); len(leases) != 0 {
		t.Errorf("leases after a failed Update = %v, want none", leases)
	}
}

func TestAllocatorSubnetChange(t *testing.T) {
	ctx, dir := ctxT(t), t.TempDir()
	old, _ := NewAllocator(dir, netip.MustParsePrefix("10.50.3.0/24"))
	if _, err := old.Acquire(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	changed, _ := NewAllocator(dir, netip.MustParsePrefix("10.50.4.0/24"))
	if _, err := changed.Acquire(ctx, "vm2"); !errors.Is(err, ErrSubnetChanged) {
		t.Fatalf("Acquire with leases held in another subnet: %v, want ErrSubnetChanged", err)
	}
	if err := old.Release(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	addr, err := changed.Acquire(ctx, "vm2")
	if err != nil || !netip.MustParsePrefix("10.50.4.0/24").Contains(addr) {
		t.Errorf("Acquire after the old leases are gone = %v, %v; want an address in the new subnet", addr, err)
	}
}

func TestAllocatorCorruptFile(t *testing.T) {
	ctx, dir := ctxT(t), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, leasesFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := NewAllocator(dir, netip.MustParsePrefix("10.50.5.0/24"))
	if _, err := a.Acquire(ctx, "vm1"); err == nil || !strings.Contains(err.Error(), "parse leases") {
		t.Errorf("Acquire with a corrupt leases file = %v, want a parse error", err)
	}
}

func TestValidateSubnet(t *testing.T) {
	for _, s := range []string{"10.0.0.0/30", "10.213.0.0/22", "10.0.0.0/8"} {
		if err := ValidateSubnet(netip.MustParsePrefix(s)); err != nil {
			t.Errorf("ValidateSubnet(%s) = %v", s, err)
		}
	}
	for _, s := range []string{"10.0.0.1/24", "10.0.0.0/31", "fd00::/64", "10.0.0.0/7"} {
		if err := ValidateSubnet(netip.MustParsePrefix(s)); err == nil {
			t.Errorf("ValidateSubnet(%s) = nil, want an error", s)
		}
	}
}

// checkDistinct fails if two ids share an address or one is missing.
func checkDistinct(t *testing.T, leases map[string]netip.Addr, wantIDs int) {
	t.Helper()
	if len(leases) != wantIDs {
		t.Fatalf("%d leases, want %d", len(leases), wantIDs)
	}
	owner := map[netip.Addr]string{}
	for id, addr := range leases {
		if other, dup := owner[addr]; dup {
			t.Errorf("%s and %s both hold %v", id, other, addr)
		}
		owner[addr] = id
	}
}

func TestAllocatorAcrossGoroutines(t *testing.T) {
	ctx, dir := ctxT(t), t.TempDir()
	subnet := netip.MustParsePrefix("10.50.0.0/22")
	const workers, perWorker = 16, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			// Each worker its own allocator: as separate processes would.
			a, err := NewAllocator(dir, subnet)
			if err != nil {
				errs <- err
				return
			}
			for i := range perWorker {
				if _, err := a.Acquire(ctx, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	a, _ := NewAllocator(dir, subnet)
	leases, err := a.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkDistinct(t, leases, workers*perWorker)
}

func TestAllocatorAcrossProcesses(t *testing.T) {
	ctx, dir := ctxT(t), t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const procs, perProc = 4, 25
	cmds := make([]*exec.Cmd, procs)
	outs := make([]strings.Builder, procs)
	for p := range procs {
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperPrefixEnv+"=p"+strconv.Itoa(p), helperCountEnv+"="+strconv.Itoa(perProc))
		cmd.Stdout, cmd.Stderr = &outs[p], &outs[p]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[p] = cmd
	}
	printed := map[string]bool{}
	for p, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", p, err, outs[p].String())
		}
		for _, line := range strings.Fields(outs[p].String()) {
			if printed[line] {
				t.Errorf("address %s handed out twice", line)
			}
			printed[line] = true
		}
	}
	if len(printed) != procs*perProc {
		t.Errorf("helpers printed %d distinct addresses, want %d", len(printed), procs*perProc)
	}
	a, _ := NewAllocator(dir, netip.MustParsePrefix("10.50.0.0/22"))
	leases, err := a.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkDistinct(t, leases, procs*perProc)
}
