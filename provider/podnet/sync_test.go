package podnet

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/network/vswitch"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// recordingSwitch records pushes; each push (both tables) is signalled.
type recordingSwitch struct {
	mu       sync.Mutex
	services []vswitch.ServiceTable
	ports    [][]vswitch.HostPort
	fail     bool
	pushed   chan struct{}
}

func (r *recordingSwitch) SetServices(_ context.Context, t vswitch.ServiceTable) error {
	r.mu.Lock()
	defer func() { r.mu.Unlock(); r.pushed <- struct{}{} }()
	if r.fail {
		return errors.New("switch down")
	}
	r.services = append(r.services, t)
	return nil
}

func (r *recordingSwitch) SetHostPorts(_ context.Context, _ string, hps []vswitch.HostPort) error {
	r.mu.Lock()
	defer func() { r.mu.Unlock(); r.pushed <- struct{}{} }()
	if r.fail {
		return errors.New("switch down")
	}
	r.ports = append(r.ports, hps)
	return nil
}

func (r *recordingSwitch) setFail(v bool) { r.mu.Lock(); r.fail = v; r.mu.Unlock() }

func (r *recordingSwitch) last() (vswitch.ServiceTable, []vswitch.HostPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t vswitch.ServiceTable
	if len(r.services) > 0 {
		t = r.services[len(r.services)-1]
	}
	var p []vswitch.HostPort
	if len(r.ports) > 0 {
		p = r.ports[len(r.ports)-1]
	}
	return t, p
}

func wait(t *testing.T, c chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("no push")
	}
}

func TestSyncPushesChangesRetriesAndResyncs(t *testing.T) {
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	slices := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	sw := &recordingSwitch{pushed: make(chan struct{}, 64)}
	var mu sync.Mutex
	var pods []*corev1.Pod
	s := &Sync{
		Domain: "cluster.local", NodeIP: "10.201.0.2",
		Services: corelisters.NewServiceLister(svcs), Slices: discoverylisters.NewEndpointSliceLister(slices),
		Pods:   func() []*corev1.Pod { mu.Lock(); defer mu.Unlock(); return pods },
		Switch: sw, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Debounce: time.Millisecond, Retry: 5 * time.Millisecond, Resync: time.Hour,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	wait(t, sw.pushed)

	svcs.Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "s"}, Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.96.0.9"}}})
	s.Kick()
	for {
		wait(t, sw.pushed)
		if tbl, _ := sw.last(); len(tbl.Services) == 1 && tbl.Services[0].Name == "s" {
			break
		}
	}

	// A failed push is retried until it goes through.
	sw.setFail(true)
	mu.Lock()
	pods = []*corev1.Pod{podWithHostPort("a", "10.213.0.5", "", "", 8080, 80)}
	mu.Unlock()
	s.Kick()
	wait(t, sw.pushed) // fails
	wait(t, sw.pushed) // and fails again: retried
	sw.setFail(false)
	for {
		wait(t, sw.pushed)
		if _, p := sw.last(); len(p) == 1 && p[0].HostPort == 8080 {
			break
		}
	}
}
