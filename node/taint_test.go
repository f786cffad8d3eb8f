package node

import (
	"context"
	"errors"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
)

func TestEnsureTaintOnNodeFromEarlierRun(t *testing.T) {
	ctx := context.Background()
	other := corev1.Taint{Key: "dedicated", Value: "ci", Effect: corev1.TaintEffectNoExecute}
	client := fake.NewClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "mac"},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "virtual-kubelet.io/provider", Value: "old", Effect: corev1.TaintEffectNoSchedule}, other}},
	})
	taints := func() []corev1.Taint {
		n, err := client.CoreV1().Nodes().Get(ctx, "mac", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n.Spec.Taints
	}
	want, _ := parseTaint(DefaultTaint)
	if err := ensureTaint(ctx, client, "mac", DefaultTaint); err != nil {
		t.Fatal(err)
	}
	if got := taints(); !slices.Equal(got, []corev1.Taint{other, *want}) {
		t.Fatalf("taints = %v, want the old value replaced and %v kept", got, other)
	}
	updates := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "update" {
				n++
			}
		}
		return n
	}
	before := updates()
	if err := ensureTaint(ctx, client, "mac", DefaultTaint); err != nil || updates() != before {
		t.Fatalf("an up-to-date node was updated again (%v)", err)
	}
	if err := ensureTaint(ctx, client, "mac", ""); err != nil {
		t.Fatal(err)
	}
	if got := taints(); !slices.Equal(got, []corev1.Taint{other}) {
		t.Fatalf("taints = %v after disabling the taint, want only %v", got, other)
	}
}

func TestRecreateDeletedNode(t *testing.T) {
	h := newStatusHarness(t)
	h.round(t)
	client := fake.NewClientset()
	handle := recreateNode(client, h.s)
	if err := handle(context.Background(), errors.New("conflict")); err == nil {
		t.Fatal("errors other than NotFound must be returned")
	}
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, "mac-mini")
	if err := handle(context.Background(), notFound); err != nil {
		t.Fatal(err)
	}
	n, err := client.CoreV1().Nodes().Get(context.Background(), "mac-mini", metav1.GetOptions{})
	if err != nil || condition(n, corev1.NodeReady).Status != corev1.ConditionTrue || len(n.Spec.Taints) != 1 {
		t.Fatalf("re-registered node = %+v, %v", n, err)
	}
}
