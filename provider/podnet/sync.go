package podnet

import (
	"context"
	"log/slog"
	"reflect"
	"time"

	"github.com/vk-applevm/vk-applevm/network/vswitch"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
)

// Switch is what Sync pushes to (network/switchnet.Network).
type Switch interface {
	SetServices(ctx context.Context, t vswitch.ServiceTable) error
	SetHostPorts(ctx context.Context, owner string, hps []vswitch.HostPort) error
}

// Sync keeps the switch's Service table and host ports in step with the
// cluster and the node's pods. Changes are coalesced (debounce) and pushed
// whole; a push that fails is retried, and everything is pushed again
// every resync so a restarted switch is current within that time even if
// its saved state was lost.
type Sync struct {
	Domain   string
	NodeIP   string
	Services corelisters.ServiceLister
	Slices   discoverylisters.EndpointSliceLister
	// Pods returns the node's pods with their current status.
	Pods   func() []*corev1.Pod
	Switch Switch
	Log    *slog.Logger
	// Debounce coalesces a burst of changes (a rollout touches many
	// objects); Retry follows a failed push; Resync pushes everything
	// again. Zero values take the defaults below.
	Debounce, Retry, Resync time.Duration

	kick chan struct{}
}

// NodeOwner owns the node's pods' host ports on the switch.
const NodeOwner = "node"

// Default intervals.
const (
	syncDebounce = 100 * time.Millisecond
	syncRetry    = time.Second
	syncResync   = 30 * time.Second
)

// Kick asks for a push soon (informer event handlers call it).
func (s *Sync) Kick() {
	select {
	case s.kicks() <- struct{}{}:
	default:
	}
}

func (s *Sync) kicks() chan struct{} {
	if s.kick == nil {
		s.kick = make(chan struct{}, 1)
	}
	return s.kick
}

// Run pushes until ctx ends.
func (s *Sync) Run(ctx context.Context) {
	debounce, retry, resync := orDefault(s.Debounce, syncDebounce), orDefault(s.Retry, syncRetry), orDefault(s.Resync, syncResync)
	kick := s.kicks()
	var lastErr string
	var lastServices *vswitch.ServiceTable
	var lastPorts []vswitch.HostPort
	pushed := false
	for {
		err := s.push(ctx, &lastServices, &lastPorts, !pushed)
		pushed = err == nil
		wait := resync
		if err != nil {
			if err.Error() != lastErr { // once per distinct failure
				s.Log.Warn("update the pod network's Services and host ports", "err", err)
			}
			lastErr = err.Error()
			wait = retry
		} else {
			lastErr = ""
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-kick:
			t.Stop()
			select {
			case <-ctx.Done():
				return
			case <-time.After(debounce):
			}
		case <-t.C:
			pushed = false // resync: push even what looks unchanged
		}
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (s *Sync) push(ctx context.Context, lastServices **vswitch.ServiceTable, lastPorts *[]vswitch.HostPort, force bool) error {
	pods := s.Pods()
	var err error
	if s.Services != nil && s.Slices != nil {
		svcs, lerr := s.Services.List(labels.Everything())
		slc, serr := s.Slices.List(labels.Everything())
		if lerr == nil && serr == nil {
			t := ServiceTable(s.Domain, svcs, slc, pods)
			if force || *lastServices == nil || !reflect.DeepEqual(**lastServices, t) {
				if err = s.Switch.SetServices(ctx, t); err == nil {
					*lastServices = &t
				}
			}
		}
	}
	hps := HostPorts(pods, parseAddr(s.NodeIP))
	if force || !reflect.DeepEqual(*lastPorts, hps) {
		if herr := s.Switch.SetHostPorts(ctx, NodeOwner, hps); herr != nil {
			err = herr
		} else {
			*lastPorts = hps
		}
	}
	return err
}
