package provider

import (
	"context"
	"fmt"
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
	h.create(testPod("hook", c))
	h.stepUntil("hook", "restarted after the failed postStart hook", time.Second, func(p *corev1.Pod) bool {
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
	h.create(pod)
	h.waitFor("pre", "running", running)
	if err := h.p.DeletePod(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	h.stepUntil("pre", "terminated", 100*time.Millisecond, terminal)
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
		// Expires in 10 min of the fake clock: the node must renew at 80 %
		// of that.
		req.Status = authv1.TokenRequestStatus{Token: fmt.Sprintf("token-%d", n), ExpirationTimestamp: metav1.NewTime(h.clock.Now().Add(10 * time.Minute))}
		return true, req, nil
	})
	h.p.wcfg.Client = client
	exp := int64(3600)
	c := ctr("app", "run")
	c.VolumeMounts = []corev1.VolumeMount{{Name: "token", MountPath: "/var/run/secrets/tokens"}}
	pod := testPod("tok", c)
	pod.Spec.Volumes = []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "api", ExpirationSeconds: &exp, Path: "token"}}},
	}}}}
	h.create(pod)
	h.waitFor("tok", "running", running)
	vm := h.rt.vm(string(pod.UID), "app")
	token := func() string {
		var got string
		for _, f := range vm.volume("token") {
			got = string(f.Content)
		}
		return got
	}
	// Created with the first token; the volume manager syncs every minute.
	if got := string(vm.cfg.Mounts[0].Files[0].Content); got != "token-1" {
		t.Fatalf("the VM was created with %q", got)
	}
	for range 7 {
		h.clock.Step(time.Minute)
	}
	if issued.Load() != 1 {
		t.Fatalf("%d tokens requested before 80 %% of the first one's life", issued.Load())
	}
	guard := time.Now().Add(waitTimeout)
	for token() != "token-2" {
		if time.Now().After(guard) {
			t.Fatalf("token in the VM %q after %d requests; want a renewed one", token(), issued.Load())
		}
		h.clock.Step(time.Minute)
		time.Sleep(time.Millisecond)
	}
	if took := h.clock.Since(t0); took < 8*time.Minute {
		t.Fatalf("renewed after %v, before 80 %% of the token's 10 min", took)
	}
}
