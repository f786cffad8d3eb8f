package main

import (
	"context"
	"testing"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMockProviderPodPath(t *testing.T) {
	ctx := context.Background()
	p := newMockProvider()
	var pushed []*corev1.Pod
	p.NotifyPods(ctx, func(pod *corev1.Pod) { pushed = append(pushed, pod) })
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
	if err := p.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != "" {
		t.Error("CreatePod changed the caller's pod")
	}
	if len(pushed) != 1 || pushed[0].Status.Phase != corev1.PodRunning || !pushed[0].Status.ContainerStatuses[0].Ready ||
		pushed[0].Status.ContainerStatuses[0].State.Running == nil {
		t.Fatalf("after CreatePod pushed %+v; want one Running pod with its container running and ready", pushed)
	}
	if st, err := p.GetPodStatus(ctx, "ns", "a"); err != nil || st.Phase != corev1.PodRunning {
		t.Fatalf("GetPodStatus: %+v, %v", st, err)
	}
	if err := p.DeletePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	last := pushed[len(pushed)-1]
	if last.Status.Phase != corev1.PodSucceeded || last.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Errorf("after DeletePod pushed %+v; want Succeeded with the container terminated", last.Status)
	}
	if _, err := p.GetPod(ctx, "ns", "a"); !errdefs.IsNotFound(err) {
		t.Errorf("GetPod after DeletePod: %v, want not found", err)
	}
	if err := p.DeletePod(ctx, pod); !errdefs.IsNotFound(err) {
		t.Errorf("second DeletePod: %v, want not found", err)
	}
	if pods, _ := p.GetPods(ctx); len(pods) != 0 {
		t.Errorf("GetPods after delete: %d pods", len(pods))
	}
}
