package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/container/vmtemplate"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/hack/bench/results"
	"github.com/vk-applevm/vk-applevm/provider"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
)

// podTarget is the bound on pod created → Running against
// Runtime.Create → ready.
const podTarget = 1.15

// manyPods is how many pods the parallel start creates at once.
const manyPods = 20

// podBench runs the node's pod path in process: virtual-kubelet's pod
// controller (informers, status pushes) and the provider over the real
// runtime (VMs, disks, the switch), against an in-memory API server
// (client-go's fake clientset) instead of kube-apiserver, so what is
// measured is the node's own overhead, not the control plane's.
type podBench struct {
	rt     vmruntime.Runtime
	image  string
	client kubernetes.Interface
	prov   *provider.Provider
	n      int
}

const benchNode = "bench-node"

// runPodBench measures pod created → Running (image cached) against
// Runtime.Create → ready in the same rounds, then starts manyPods pods at
// once.
func runPodBench(ctx context.Context, o options, work string, log *slog.Logger) section {
	s := section{Title: "pods: created -> Running (virtual-kubelet pod controller + provider + real VMs, in-memory API server)"}
	const name = "pod created -> Running / Runtime.Create -> ready"
	fail := func(err error) section {
		log.Error("pod benchmark", "err", err)
		s.Rows = append(s.Rows, missing(name, fmt.Sprintf("<= %.2fx", podTarget), err.Error()))
		return s
	}
	bundle, err := benchGuest(o, false)
	if err != nil {
		return fail(err)
	}
	pb, err := newProductBench(ctx, o, bundle, filepath.Join(work, "pod"), log)
	if err != nil {
		return fail(err)
	}
	defer pb.close(context.WithoutCancel(ctx))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	podNet, ok := pb.net.(vmruntime.PodNetwork)
	if !ok {
		return fail(errors.New("the VM network is not a pod network"))
	}
	b, err := newPodBench(ctx, &vmruntime.Adapter{Runtime: pb.rt}, podNet, filepath.Join(pb.root, "node"), pb.ref, pb.rt.Overhead())
	if err != nil {
		return fail(err)
	}

	var creates, pods []time.Duration
	variants := []variant{
		{"Runtime.Create", func(ctx context.Context, keep bool) error {
			d, err := directCreate(ctx, pb)
			if err == nil && keep {
				creates = append(creates, d)
			}
			return err
		}},
		{"pod", func(ctx context.Context, keep bool) error {
			ds, err := b.pods(ctx, 1)
			if err == nil && keep {
				pods = append(pods, ds[0])
			}
			return err
		}},
	}
	if err := runInterleaved(ctx, log, "pod", o.rounds, variants); err != nil {
		return fail(err)
	}
	r := ratio(median(pods), median(creates))
	s.Rows = append(s.Rows,
		info("Runtime.Create -> ready", fmtDuration(median(creates))+"  "+fmtSeries(creates)),
		info("pod created -> Running", fmtDuration(median(pods))+"  "+fmtSeries(pods)),
		atMost(name, fmt.Sprintf("%.3fx (paired median %.3fx)", r, median(pairedRatios(pods, creates))), r, podTarget, fmt.Sprintf("%.2fx", podTarget)),
	)

	const many = "pods created at once, all Running"
	start := time.Now()
	ds, err := b.pods(ctx, manyPods)
	if err != nil {
		log.Error("parallel pod start", "err", err)
		s.Rows = append(s.Rows, missing(fmt.Sprintf("%d %s", manyPods, many), "all Running", err.Error()))
		return s
	}
	s.Rows = append(s.Rows, manyRows("pod.many", "", ds, start, o.rounds)...)

	// The same pods, each VM resumed from a template of the pods' shape
	// (--vm-templates); one pod first builds the template.
	tb, err := templatedPodBench(ctx, pb, bundle, podNet)
	if err != nil {
		return fail(err)
	}
	if _, err := tb.pods(ctx, 1); err != nil {
		return fail(fmt.Errorf("the pod that builds the template: %w", err))
	}
	start = time.Now()
	ds, err = tb.pods(ctx, manyPods)
	if err != nil {
		log.Error("parallel pod start from a template", "err", err)
		s.Rows = append(s.Rows, missing(fmt.Sprintf("%d %s, resumed from a template", manyPods, many), "all Running", err.Error()))
		return s
	}
	s.Rows = append(s.Rows, manyRows("pod.many.template", ", each VM resumed from a template of the pods' shape (--vm-templates)", ds, start, o.rounds)...)
	return s
}

// manyRows reports manyPods pods started at once: all Running, with p50
// and p95 of their starts.
func manyRows(id, how string, ds []time.Duration, start time.Time, rounds int) []row {
	slices.Sort(ds)
	return []row{
		{Name: fmt.Sprintf("%d pods created at once%s, all Running", manyPods, how), Value: fmt.Sprintf("%d Running, the last after %s", len(ds), fmtDuration(ds[len(ds)-1])),
			Target: "all Running", Verdict: pass},
		measured(results.Figure{
			ID:     id,
			Figure: fmt.Sprintf("%d pods created at once (real VMs, 2 cores, TCG)%s: start (created → Running) p50", manyPods, how),
			Value:  percentile(ds, 50).Seconds(), Unit: "s",
			Detail:  fmt.Sprintf("all %d Running; p95 %s; all deleted %s after the creates", len(ds), fmtDuration(percentile(ds, 95)), fmtDuration(time.Since(start))),
			Command: fmt.Sprintf("go run ./hack/bench -skip boot,product,run,shim,memory,convert,net,churn -rounds %d", rounds),
		}),
		info("  start time (created -> Running) p50 / p95", fmtDuration(percentile(ds, 50))+" / "+fmtDuration(percentile(ds, 95))),
	}
}

// templatedPodBench is a second node over the same images, network and
// shims whose runtime resumes VMs from templates, built by a QEMU driver
// in this process that decides on the accelerator as the shims do.
func templatedPodBench(ctx context.Context, pb *productBench, bundle guest.Bundle, podNet vmruntime.PodNetwork) (*podBench, error) {
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d := qemu.New(qemu.Options{Logger: quiet, Probe: qemu.ProbeImage{Kernel: bundle.Kernel, Initrd: bundle.FloorInitrd}})
	store, err := vmtemplate.ForQEMU(ctx, filepath.Join(pb.root, "templates"), d, bundle.Arch, quiet)
	if err != nil {
		return nil, err
	}
	rt, err := container.New(container.Config{
		Root: pb.root, Images: pb.images, Network: pb.net, Guest: bundle, Driver: "qemu",
		ShimArgv: pb.shimArgv, Logger: quiet, Templates: store,
	})
	if err != nil {
		return nil, err
	}
	return newPodBench(ctx, &vmruntime.Adapter{Runtime: rt}, podNet, filepath.Join(pb.root, "node-templates"), pb.ref, rt.Overhead())
}

// percentile is the nearest-rank percentile of sorted ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := (p*len(ds)+99)/100 - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// newPodBench runs virtual-kubelet's pod controller and a provider over rt
// for pods of image; root is the node's state directory.
func newPodBench(ctx context.Context, rt vmruntime.Runtime, podNet vmruntime.PodNetwork, root, image string, overhead uint64) (*podBench, error) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	rec := &record.FakeRecorder{} // no channel: events are dropped
	prov, err := provider.New(provider.Config{
		NodeName: benchNode, NodeIP: "10.201.0.2", Root: root,
		Runtime: rt, Objects: clientObjects{client}, Client: client, Recorder: rec,
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods: resource.MustParse("110")},
		VMOverheadBytes: overhead, Network: podNet,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, err
	}
	pc, err := vknode.NewPodController(vknode.PodControllerConfig{
		PodClient: client.CoreV1(), PodInformer: factory.Core().V1().Pods(), EventRecorder: rec, Provider: prov,
		ConfigMapInformer: factory.Core().V1().ConfigMaps(), SecretInformer: factory.Core().V1().Secrets(),
		ServiceInformer: factory.Core().V1().Services(), SkipDownwardAPIResolution: true,
	})
	if err != nil {
		return nil, fmt.Errorf("pod controller: %w", err)
	}
	factory.Start(ctx.Done())
	go func() { _ = pc.Run(ctx, manyPods) }()
	select {
	case <-pc.Ready():
	case <-pc.Done():
		return nil, fmt.Errorf("pod controller: %w", pc.Err())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &podBench{rt: rt, image: image, client: client, prov: prov}, nil
}

// directCreate times Runtime.Create of a busybox container with the size a
// pod without requests gets, then deletes it.
func directCreate(ctx context.Context, pb *productBench) (time.Duration, error) {
	pb.n++
	start := time.Now()
	sb, err := pb.rt.Create(ctx, container.VMConfig{
		Name: "direct-" + strconv.Itoa(pb.n), ImageRef: pb.ref, MemoryBytes: containerMemory,
		LogDir: filepath.Join(pb.root, "logs"),
	})
	if err != nil {
		return 0, fmt.Errorf("create container: %w", err)
	}
	d := time.Since(start)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return d, sb.Delete(dctx)
}

// pods creates n pods at once, returns each one's created → Running time
// (by the status the node pushed) and deletes them, waiting for their
// VMs to be gone.
func (b *podBench) pods(ctx context.Context, n int) ([]time.Duration, error) {
	names := make([]string, n)
	created := make([]time.Time, n)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		b.n++
		names[i] = "bench-" + strconv.Itoa(b.n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := benchPod(names[i], b.image)
			mu.Lock()
			created[i] = time.Now()
			mu.Unlock()
			if _, err := b.client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("create pod %s: %w", pod.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	defer b.deleteAll(ctx, names)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]time.Duration, n)
	pending := n
	deadline := time.Now().Add(10 * time.Minute)
	for pending > 0 {
		for i, name := range names {
			if out[i] != 0 {
				continue
			}
			p, err := b.client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("get pod %s: %w", name, err)
			}
			switch p.Status.Phase {
			case corev1.PodRunning:
				mu.Lock()
				out[i] = time.Since(created[i])
				mu.Unlock()
				pending--
			case corev1.PodFailed, corev1.PodSucceeded:
				return nil, fmt.Errorf("pod %s ended: %s %s", name, p.Status.Reason, p.Status.Message)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d pods not Running after 10 minutes", pending, n)
		}
		if err := sleep(ctx, 5*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// deleteAll deletes the pods and waits for the runtime to have no VM left.
func (b *podBench) deleteAll(ctx context.Context, names []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	for _, name := range names {
		_ = b.client.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{})
	}
	for ctx.Err() == nil {
		vms, err := b.rt.VMs(ctx)
		if err == nil && len(vms) == 0 {
			return
		}
		_ = sleep(ctx, 20*time.Millisecond)
	}
}

func benchPod(name, image string) *corev1.Pod {
	zero := int64(0)
	no := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name + "-" + strconv.Itoa(os.Getpid())),
			CreationTimestamp: metav1.Now()},
		Spec: corev1.PodSpec{
			NodeName: benchNode, RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSDefault,
			TerminationGracePeriodSeconds: &zero, AutomountServiceAccountToken: &no, EnableServiceLinks: &no,
			Containers: []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sleep", "3600"}}},
		},
	}
}

// clientObjects reads configMaps, secrets and services straight from the
// client (the benchmark's pods use none).
type clientObjects struct{ client kubernetes.Interface }

func (o clientObjects) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	return o.client.CoreV1().ConfigMaps(namespace).Get(context.Background(), name, metav1.GetOptions{})
}

func (o clientObjects) Secret(namespace, name string) (*corev1.Secret, error) {
	return o.client.CoreV1().Secrets(namespace).Get(context.Background(), name, metav1.GetOptions{})
}

func (o clientObjects) Services(namespace string) ([]*corev1.Service, error) {
	list, err := o.client.CoreV1().Services(namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Service, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}
