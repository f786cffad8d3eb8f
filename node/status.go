package node

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

// hostReader gives the figures the status is evaluated from (hostinfo;
// tests fake it).
type hostReader interface {
	Resources(root string) (hostResources, hostinfo.Memory, hostinfo.Disk, error)
}

type realHostReader struct{}

func (realHostReader) Resources(root string) (hostResources, hostinfo.Memory, hostinfo.Disk, error) {
	m, err := hostinfo.ReadMemory()
	if err != nil {
		return hostResources{}, m, hostinfo.Disk{}, err
	}
	d, err := hostinfo.ReadDisk(root)
	if err != nil {
		return hostResources{}, m, d, err
	}
	return hostResources{CPUs: hostinfo.CPUCount(), MemoryBytes: m.TotalBytes, DiskBytes: d.TotalBytes}, m, d, nil
}

// nodeStatus is the node's health and status: virtual-kubelet's
// NodeProvider. Every StatusInterval it checks the runtime, memory and
// disk, and pushes conditions and capacity when they change.
//
// Ping is the lease lever: when it fails, virtual-kubelet neither renews
// the lease nor patches the status, so the node goes NotReady. Ping
// therefore starts failing one round after the Ready=False condition (with
// its reason) was pushed, so the reason reaches the API server; and every
// change is pushed again in the next two rounds, because virtual-kubelet
// refuses status updates while its last ping result (refreshed every 10 s)
// is a failure, so the recovery push may be refused once.
type nodeStatus struct {
	cfg    *Config
	host   hostReader
	health func(context.Context) error
	log    *slog.Logger
	// recorder, if set, gets the kubelet's node events on transitions.
	recorder record.EventRecorder

	mu         sync.Mutex
	base       *corev1.Node
	conds      []corev1.NodeCondition
	capacity   corev1.ResourceList
	alloc      corev1.ResourceList
	notReady   string    // why Ready is False; "" when ready
	healthyAt  time.Time // when the health check last passed
	pingErr    error
	registered bool
	evaluated  time.Time
	repushes   int // rounds that push again after a change
	notify     func(*corev1.Node)
}

var _ node.NodeProvider = (*nodeStatus)(nil)

func newNodeStatus(cfg *Config, base *corev1.Node, host hostReader, health func(context.Context) error) *nodeStatus {
	return &nodeStatus{cfg: cfg, base: base, host: host, health: health, log: cfg.Logger}
}

// assessment is one round's verdict.
type assessment struct {
	notReady                  []string
	memPressure, diskPressure bool
	capacity, alloc           corev1.ResourceList
}

func (s *nodeStatus) assess(ctx context.Context) assessment {
	var a assessment
	if err := s.checkHealth(ctx); err != nil {
		a.notReady = append(a.notReady, fmt.Sprintf("VM runtime is not usable: %v", err))
	}
	res, mem, disk, err := s.host.Resources(s.cfg.Provider.Root)
	if err != nil {
		a.notReady = append(a.notReady, fmt.Sprintf("cannot read host resources: %v", err))
		return a
	}
	a.capacity, a.alloc = resources(s.cfg, res)
	a.memPressure = mem.AvailableBytes < s.cfg.MemoryPressureBytes
	a.diskPressure = disk.FreeBytes*100 < disk.TotalBytes*uint64(s.cfg.DiskPressurePercent)
	if disk.FreeBytes < s.cfg.DiskMinFreeBytes {
		a.notReady = append(a.notReady, fmt.Sprintf("state root %s has %s free, below the minimum %s",
			s.cfg.Provider.Root, bytesString(disk.FreeBytes), bytesString(s.cfg.DiskMinFreeBytes)))
	}
	return a
}

// unansweredHealthLimit is how long the health check may go unanswered
// (each round's check running out of its time) before the node is
// NotReady: the kubelet's maxWaitForContainerRuntime, after which it calls
// a runtime that stopped answering its status calls down. A check that
// answers with a failure (the hypervisor is gone, the switch will not
// restart) makes the node NotReady at once, as a runtime reporting itself
// not ready does for a kubelet.
const unansweredHealthLimit = 30 * time.Second

// checkHealth runs the health check, bounded by the status interval. A
// check that ran out of time within unansweredHealthLimit of the last one
// that passed is not a failure: on a loaded host one slow answer (the
// switch's status call behind a burst of VM boots) says nothing of the
// runtime's health, and flipping Ready for it would make the control plane
// taint the node and evict its pods.
func (s *nodeStatus) checkHealth(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, s.cfg.StatusInterval)
	defer cancel()
	err := s.health(hctx)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.healthyAt = now
		return nil
	case hctx.Err() == nil || ctx.Err() != nil:
		return err // an answer, or the node is stopping
	case s.healthyAt.IsZero():
		return fmt.Errorf("no answer within %v since the node started: %w", s.cfg.StatusInterval, err)
	case now.Sub(s.healthyAt) >= unansweredHealthLimit:
		return fmt.Errorf("no answer for %v: %w", now.Sub(s.healthyAt).Round(time.Second), err)
	}
	s.log.Warn("VM runtime health check did not answer in time; the node stays Ready unless it goes unanswered for "+unansweredHealthLimit.String(),
		"lastHealthy", now.Sub(s.healthyAt).Round(time.Second), "err", err)
	return nil
}

func bytesString(n uint64) string { return resource.NewQuantity(int64(n), resource.BinarySI).String() }

// evaluate runs one round and pushes the node if it changed (or a repeat
// push is due).
func (s *nodeStatus) evaluate(ctx context.Context) {
	a := s.assess(ctx)
	now := metav1.Now()
	s.mu.Lock()
	conds := conditions(a, s.conds, now, s.cfg)
	events := transitions(s.conds, conds)
	changed := !sameConditions(conds, s.conds)
	if a.capacity != nil { // nil: the host could not be read; keep the last
		changed = changed || !sameResources(a.capacity, s.capacity) || !sameResources(a.alloc, s.alloc)
		s.capacity, s.alloc = a.capacity, a.alloc
	}
	wasNotReady := s.notReady != ""
	s.conds = conds
	notReady := strings.Join(a.notReady, "; ")
	s.notReady = notReady
	switch {
	case notReady == "":
		s.pingErr = nil
	case wasNotReady: // the reason has been pushed in an earlier round
		s.pingErr = fmt.Errorf("node not ready: %s", notReady)
	}
	s.evaluated = time.Now()
	push := changed || s.repushes > 0
	if changed {
		s.repushes = 2
	} else if s.repushes > 0 {
		s.repushes--
	}
	cb := s.notify
	n := s.nodeLocked()
	s.mu.Unlock()
	if changed {
		s.log.Info("node status changed", "ready", notReady == "", "why", notReady,
			"memoryPressure", a.memPressure, "diskPressure", a.diskPressure)
	}
	if s.recorder != nil {
		ref := &corev1.ObjectReference{Kind: "Node", Name: s.cfg.NodeName, UID: types.UID(s.cfg.NodeName)}
		for _, e := range events {
			s.recorder.Event(ref, e[0], e[1], e[2])
		}
	}
	if push && cb != nil {
		cb(n) // blocks until virtual-kubelet's control loop takes it
	}
}

// node returns the node with the current status.
func (s *nodeStatus) node() *corev1.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodeLocked()
}

func (s *nodeStatus) nodeLocked() *corev1.Node {
	n := s.base.DeepCopy()
	n.Status.Conditions = append([]corev1.NodeCondition(nil), s.conds...)
	n.Status.Capacity = s.capacity.DeepCopy()
	n.Status.Allocatable = s.alloc.DeepCopy()
	return n
}

// markRegistered arms Ping: virtual-kubelet refuses to register a node
// whose first Ping fails, and the node should register (NotReady, with
// its reason) rather than exit.
func (s *nodeStatus) markRegistered() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registered = true
}

// Ping reports the last round's health.
func (s *nodeStatus) Ping(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.registered {
		return nil
	}
	if age := time.Since(s.evaluated); age > 3*s.cfg.StatusInterval {
		return fmt.Errorf("node health last evaluated %v ago", age.Round(time.Second))
	}
	return s.pingErr
}

// NotifyNodeStatus starts the evaluation loop.
func (s *nodeStatus) NotifyNodeStatus(ctx context.Context, cb func(*corev1.Node)) {
	s.mu.Lock()
	s.notify = cb
	s.mu.Unlock()
	go func() {
		t := time.NewTicker(s.cfg.StatusInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.evaluate(ctx)
			}
		}
	}()
}
