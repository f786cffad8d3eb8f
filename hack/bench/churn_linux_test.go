package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The harness's round drives each variant's node to every pod Running and
// then gone, here against an in-memory API (each node its own: the fake
// ignores the field selector that keeps a node to its pods); the real
// control plane is `make bench`'s.
func TestChurnRoundOnFakeAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	for i, start := range []func(context.Context, nodeClients) (*churnVariant, error){
		func(ctx context.Context, c nodeClients) (*churnVariant, error) {
			return startOurNode(ctx, c, t.TempDir(), log)
		},
		startMockNode,
	} {
		client := fake.NewClientset()
		// The API server gives every pod a UID; the provider names VMs by it.
		client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			a.(k8stesting.CreateAction).GetObject().(*corev1.Pod).UID = types.UID(uuid.NewString())
			return false, nil, nil
		})
		w, err := watchPods(ctx, client, churnNS)
		if err != nil {
			t.Fatal(err)
		}
		v, err := start(ctx, nodeClients{api: client, events: client})
		if err != nil {
			t.Fatal(err)
		}
		s, err := churnRound(ctx, client, w, v, i, 20)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		if s.Create <= 0 || s.Delete <= 0 {
			t.Errorf("%s: %+v, want both phases timed", v.name, s)
		}
	}
}
