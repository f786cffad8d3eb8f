package main

import (
	"context"
	"io"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// mockProvider is the churn benchmark's reference: the equivalent of
// virtual-kubelet v1.14.1's mock provider, the reference provider its
// project ships. That one lives in cmd/virtual-kubelet/internal/provider/mock,
// an internal package no other module can import, so this is written here
// to do what it does on the pod path: CreatePod marks the pod Running with
// every container running and ready, and pushes that status through
// NotifyPods; DeletePod marks it Succeeded with every container
// terminated, pushes that and forgets the pod. It keeps its pods under a
// lock (upstream's map has none) and serves no streams or stats.
type mockProvider struct {
	mu     sync.Mutex
	pods   map[string]*corev1.Pod // by namespace/name
	notify func(*corev1.Pod)
}

var (
	_ nodeutil.Provider = (*mockProvider)(nil)
	_ node.PodNotifier  = (*mockProvider)(nil)
)

func newMockProvider() *mockProvider {
	return &mockProvider{pods: map[string]*corev1.Pod{}, notify: func(*corev1.Pod) {}}
}

func podKey(namespace, name string) string { return namespace + "/" + name }

func (p *mockProvider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	pod = pod.DeepCopy()
	now := metav1.NewTime(time.Now())
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "10.250.255.1",
		PodIP:     "10.250.255.2",
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		},
	}
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	p.mu.Lock()
	p.pods[podKey(pod.Namespace, pod.Name)] = pod
	notify := p.notify
	p.mu.Unlock()
	notify(pod.DeepCopy())
	return nil
}

func (p *mockProvider) UpdatePod(ctx context.Context, pod *corev1.Pod) error {
	pod = pod.DeepCopy()
	p.mu.Lock()
	p.pods[podKey(pod.Namespace, pod.Name)] = pod
	notify := p.notify
	p.mu.Unlock()
	notify(pod.DeepCopy())
	return nil
}

func (p *mockProvider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	key := podKey(pod.Namespace, pod.Name)
	p.mu.Lock()
	known, ok := p.pods[key]
	delete(p.pods, key)
	notify := p.notify
	p.mu.Unlock()
	if !ok {
		return errdefs.NotFound("pod not found")
	}
	pod = known.DeepCopy()
	now := metav1.Now()
	pod.Status.Phase = corev1.PodSucceeded
	pod.Status.Reason = "MockProviderPodDeleted"
	for i := range pod.Status.ContainerStatuses {
		cs := &pod.Status.ContainerStatuses[i]
		started := metav1.Time{}
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		cs.Ready = false
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Reason: "MockProviderPodContainerDeleted", StartedAt: started, FinishedAt: now,
		}}
	}
	notify(pod)
	return nil
}

func (p *mockProvider) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod, ok := p.pods[podKey(namespace, name)]
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not known to the provider", namespace, name)
	}
	return pod.DeepCopy(), nil
}

func (p *mockProvider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

func (p *mockProvider) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(p.pods))
	for _, pod := range p.pods {
		out = append(out, pod.DeepCopy())
	}
	return out, nil
}

func (p *mockProvider) NotifyPods(ctx context.Context, notify func(*corev1.Pod)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notify = notify
}

var errMockNoStreams = errdefs.InvalidInput("the benchmark's mock provider serves no streams or stats")

func (p *mockProvider) GetContainerLogs(context.Context, string, string, string, api.ContainerLogOpts) (io.ReadCloser, error) {
	return nil, errMockNoStreams
}

func (p *mockProvider) RunInContainer(context.Context, string, string, string, []string, api.AttachIO) error {
	return errMockNoStreams
}

func (p *mockProvider) AttachToContainer(context.Context, string, string, string, api.AttachIO) error {
	return errMockNoStreams
}

func (p *mockProvider) GetStatsSummary(context.Context) (*statsv1alpha1.Summary, error) {
	return nil, errMockNoStreams
}

func (p *mockProvider) GetMetricsResource(context.Context) ([]*dto.MetricFamily, error) {
	return nil, errMockNoStreams
}

func (p *mockProvider) PortForward(context.Context, string, string, int32, io.ReadWriteCloser) error {
	return errMockNoStreams
}
