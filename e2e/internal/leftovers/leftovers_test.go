package leftovers

import (
	"slices"
	"testing"
)

func TestNamesCarryTheirRunsPid(t *testing.T) {
	cli, k8s := Namespaces(4242)
	for name, want := range map[string]int{cli: 4242, k8s: 4242, "vkav-e2e-7": 7, "vkav-e2e-k8s-7": 7} {
		if got, ok := namespaceOwner(name); !ok || got != want {
			t.Errorf("namespaceOwner(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
	// Not a run's: the kernel bridge's of old nodes, the benchmark's, odd spellings.
	for _, name := range []string{"vkav-1a2b3c4d", "vkav-bench-net-12", "vkav-e2e-", "vkav-e2e-k8s-", "vkav-e2e-012", "vkav-e2e-12x", "vk-applevm"} {
		if got, ok := namespaceOwner(name); ok {
			t.Errorf("namespaceOwner(%q) = %d; want none", name, got)
		}
	}
	if got, ok := tempOwner(TempPattern(99) + "123456"); !ok || got != 99 {
		t.Errorf("tempOwner(%q) = %d, %v; want 99", TempPattern(99)+"123456", got, ok)
	}
	// The directory of a run from before pids were in its name.
	if got, ok := tempOwner("vkav-e2e-1447196528"); ok {
		t.Errorf("tempOwner(vkav-e2e-1447196528) = %d; want none", got)
	}
}

func TestStaleRuns(t *testing.T) {
	const self = 10
	procs := map[int]string{
		20:   TestBinary, // a run in progress
		30:   "bash",     // pid reused since its run ended
		self: TestBinary,
	}
	comm := func(pid int) (string, bool) { n, ok := procs[pid]; return n, ok }
	ns := []string{"vkav-e2e-20", "vkav-e2e-k8s-20", "vkav-e2e-30", "vkav-e2e-k8s-40", "vkav-e2e-10", "vkav-0011aabb"}
	tmp := []string{"vkav-e2e-20-1", "vkav-e2e-50-777", "vkav-e2e-999", "go-build1"}
	got := staleRuns(ns, tmp, self, comm)
	slices.Sort(got)
	if want := []int{self, 30, 40, 50}; !slices.Equal(got, want) {
		t.Errorf("stale runs %v, want %v (not 20: it is running)", got, want)
	}
}
