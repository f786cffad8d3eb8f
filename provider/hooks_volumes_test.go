package provider

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestPostStartFailureKillsAndRestarts(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}}
	if err := h.p.CreatePod(context.Background(), testPod("hook", c)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("hook", "restarted after the failed postStart hook", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	if !hasEvent(h.events(), "Warning FailedPostStartHook") {
		t.Fatal("no FailedPostStartHook event")
	}
}

func TestPreStopRunsOnDelete(t *testing.T) {
	h := newHarness(t)
	c := ctr("app", "run")
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"setflag", "prestop"}}}}
	pod := testPod("pre", c)
	if err := h.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	h.waitFor("pre", "running", running)
	if err := h.p.DeletePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	h.waitFor("pre", "terminated", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
	})
	if !h.rt.flag("prestop") {
		t.Fatal("the preStop hook did not run before the container was stopped")
	}
}

// TestServiceAccountTokenRotates: a projected token is requested through
// TokenRequest, bound to the pod, and replaced in the VM before it expires.
func TestServiceAccountTokenRotates(t *testing.T) {
	h := newHarness(t)
	client := fake.NewSimpleClientset()
	var issued atomic.Int32
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		req := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenRequest)
		if req.Spec.BoundObjectRef == nil || req.Spec.BoundObjectRef.Kind != "Pod" || req.Spec.Audiences[0] != "api" {
			t.Errorf("token request %+v", req.Spec)
		}
		n := issued.Add(1)
		// Expires in 500 ms: the node must renew at 80 % of that.
		req.Status = authv1.TokenRequestStatus{Token: fmt.Sprintf("token-%d", n), ExpirationTimestamp: metav1.NewTime(time.Now().Add(500 * time.Millisecond))}
		return true, req, nil
	})
	h.p.cfg.Client = client
	exp := int64(3600)
	c := ctr("app", "run")
	c.VolumeMounts = []corev1.VolumeMount{{Name: "token", MountPath: "/var/run/secrets/tokens"}}
	pod := testPod("tok", c)
	pod.Spec.Volumes = []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "api", ExpirationSeconds: &exp, Path: "token"}}},
	}}}}
	if err := h.p.CreatePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	h.waitFor("tok", "running", running)
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.rt.mu.Lock()
		sb := h.rt.sandboxes[sandboxID(string(pod.UID), "app")]
		h.rt.mu.Unlock()
		var got string
		if sb != nil {
			sb.mu.Lock()
			for _, f := range sb.files["token"] {
				got = string(f.Content)
			}
			sb.mu.Unlock()
		}
		if strings.HasPrefix(got, "token-") && got != "token-1" {
			break // a renewed token reached the VM
		}
		if time.Now().After(deadline) {
			t.Fatalf("token in the VM %q after %d requests; want a renewed one", got, issued.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
