package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"github.com/vk-applevm/vk-applevm/hack/bench/results"
	"github.com/vk-applevm/vk-applevm/internal/localcluster"
	"github.com/vk-applevm/vk-applevm/node"
	"github.com/vk-applevm/vk-applevm/provider"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
)

var (
	churnPods   = flag.Int("churn-pods", 100, "pods the churn benchmark creates and deletes per variant and round")
	churnRounds = flag.Int("churn-rounds", 3, "measured rounds of the churn benchmark (after one warm-up round)")
)

// churnCommand reproduces the churn figures alone (it names the other
// benchmarks of the branches too: -skip ignores unknown names).
const churnCommand = "go run ./hack/bench -skip boot,product,run,pod,shim,memory,convert,net"

// The two nodes of the churn benchmark.
const (
	churnNodeOurs = "churn-applevm"
	churnNodeMock = "churn-mock"
	churnNS       = "churn"
)

// churnVariant is one provider under test, behind its own node.
type churnVariant struct {
	name, node string
	// requests counts the node's API requests.
	requests *requestCounter
	// leftover reports what the provider still holds after a round
	// ("" when nothing): the instant runtime's VMs.
	leftover func() string
}

// churnSample is one variant's round.
type churnSample struct {
	Create, Delete time.Duration
	Requests       int64
}

// runChurn measures the provider's own machinery: a real control plane
// (hack/cluster, in a network namespace), and two nodes in this process,
// each with a client of the same settings: vk-applevm's node (node.Run, the
// whole provider) on an instant in-process runtime, and virtual-kubelet's
// mock provider behind nodeutil.NewNode. Each round creates N pods bound
// to one node, waits until the API server shows every one Running, deletes
// them and waits until every one is gone; the variants alternate.
func runChurn(ctx context.Context, o options, work string, log *slog.Logger) section {
	s := section{Title: fmt.Sprintf("provider churn: %d pods, instant runtime vs virtual-kubelet's mock (real control plane)", *churnPods)}
	target := "ratio " + results.RatioAtLeast(1).Op + " 1.00×"
	fail := func(err error) section {
		log.Error("churn benchmark", "err", err)
		s.Rows = append(s.Rows, missing("100 pods created → Running → deleted → gone, × as fast as the mock", target, err.Error()))
		return s
	}
	if *churnPods < 1 || *churnRounds < 1 {
		return fail(fmt.Errorf("-churn-pods %d -churn-rounds %d: want at least 1", *churnPods, *churnRounds))
	}
	repo, err := os.Getwd()
	if err != nil {
		return fail(err)
	}
	n := os.Getpid()%200 + 20
	cluster, err := localcluster.Up(ctx, localcluster.Options{
		Repo: repo, Dir: filepath.Join(work, "cluster"), NetNS: fmt.Sprintf("vkav-bench-%d", os.Getpid()),
		HostIP: fmt.Sprintf("10.205.%d.1", n), IP: fmt.Sprintf("10.205.%d.2", n), NodeName: churnNodeOurs, Stderr: os.Stderr,
	})
	if err != nil {
		return fail(fmt.Errorf("start the control plane: %w", err))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := cluster.Down(dctx); err != nil {
			log.Warn("stop the control plane", "err", err)
		}
	}()
	samples, variants, err := churn(ctx, cluster, work, log)
	if err != nil {
		return fail(err)
	}
	return churnSection(s, samples, variants)
}

// churn runs the rounds; samples[v][round] for variants[v].
func churn(ctx context.Context, cluster *localcluster.Cluster, work string, log *slog.Logger) ([][]churnSample, []*churnVariant, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cluster.AdminKubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("load the admin kubeconfig: %w", err)
	}
	// The harness's own client must never be what limits a variant.
	hc := rest.CopyConfig(rc)
	hc.QPS, hc.Burst = 500, 1000
	harness, err := kubernetes.NewForConfig(hc)
	if err != nil {
		return nil, nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := prepareChurnNamespace(ctx, harness); err != nil {
		return nil, nil, err
	}
	watcher, err := watchPods(ctx, harness, churnNS)
	if err != nil {
		return nil, nil, err
	}

	// Each node gets clients of its own (their own rate limiters) with the
	// settings `vk-applevm node` uses: the kubelet's limits, events on a
	// client of their own.
	var variants []*churnVariant
	for _, start := range []func(context.Context, nodeClients) (*churnVariant, error){
		func(ctx context.Context, c nodeClients) (*churnVariant, error) {
			return startOurNode(ctx, c, work, log)
		},
		startMockNode,
	} {
		clients, err := newNodeClients(rc)
		if err != nil {
			return nil, nil, err
		}
		v, err := start(ctx, clients)
		if err != nil {
			return nil, nil, err
		}
		v.requests = clients.requests
		variants = append(variants, v)
	}
	for _, v := range variants {
		if err := localcluster.WaitFor(ctx, 2*time.Minute, "node "+v.node+" Ready", func() (bool, error) {
			return nodeReady(ctx, harness, v.node)
		}); err != nil {
			return nil, nil, err
		}
	}

	samples := make([][]churnSample, len(variants))
	for round := 0; round <= *churnRounds; round++ {
		for _, i := range roundOrder(len(variants), round) {
			v := variants[i]
			before := v.requests.load()
			sample, err := churnRound(ctx, harness, watcher, v, round, *churnPods)
			if err != nil {
				return nil, nil, fmt.Errorf("%s, round %d: %w", v.name, round, err)
			}
			sample.Requests = v.requests.load() - before
			log.Debug("churn round", "variant", v.name, "round", round, "create", sample.Create, "delete", sample.Delete, "requests", sample.Requests)
			if round > 0 { // round 0 warms up
				samples[i] = append(samples[i], sample)
			}
		}
	}
	return samples, variants, nil
}

// churnRound creates pods pods bound to v's node, waits for all Running,
// deletes them and waits for all gone.
func churnRound(ctx context.Context, client kubernetes.Interface, w *podWatcher, v *churnVariant, round, pods int) (churnSample, error) {
	names := make([]string, pods)
	for i := range names {
		names[i] = fmt.Sprintf("%s-r%d-%03d", v.node, round, i)
	}
	var s churnSample
	start := time.Now()
	if err := forEach(ctx, names, func(ctx context.Context, name string) error {
		_, err := client.CoreV1().Pods(churnNS).Create(ctx, churnPod(name, v.node), metav1.CreateOptions{})
		return err
	}); err != nil {
		return s, fmt.Errorf("create pods: %w", err)
	}
	if err := w.waitAll(ctx, names, 5*time.Minute, "Running", func(p *corev1.Pod) bool {
		return p != nil && p.Status.Phase == corev1.PodRunning
	}); err != nil {
		return s, err
	}
	s.Create = time.Since(start)
	start = time.Now()
	if err := forEach(ctx, names, func(ctx context.Context, name string) error {
		return client.CoreV1().Pods(churnNS).Delete(ctx, name, metav1.DeleteOptions{})
	}); err != nil {
		return s, fmt.Errorf("delete pods: %w", err)
	}
	if err := w.waitAll(ctx, names, 5*time.Minute, "gone", func(p *corev1.Pod) bool { return p == nil }); err != nil {
		return s, err
	}
	s.Delete = time.Since(start)
	// The provider may finish its own cleanup just after the API server
	// forgot the pod (not counted): it must, within a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for what := v.leftover(); what != ""; what = v.leftover() {
		if time.Now().After(deadline) {
			return s, fmt.Errorf("every pod is gone but the provider still holds %s after 10 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, nil
}

// churnPod is what the benchmark runs: one container that runs until it
// is stopped, with the service account token volume the API server adds.
func churnPod(name, nodeName string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: churnNS, Labels: map[string]string{"app": "churn"}},
		Spec: corev1.PodSpec{
			NodeName: nodeName,
			Containers: []corev1.Container{{
				Name: "app", Image: "docker.io/library/busybox:latest", Command: []string{"sleep", "infinity"},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
				}},
			}},
		},
	}
}

// forEach runs fn for every name, a few at a time, as a controller
// creating a ReplicaSet's pods would; it returns the first error.
func forEach(ctx context.Context, names []string, fn func(context.Context, string) error) error {
	const parallel = 10
	work := make(chan string)
	errc := make(chan error, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				if err := fn(ctx, name); err != nil {
					errc <- fmt.Errorf("%s: %w", name, err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, name := range names {
		select {
		case work <- name:
		case err = <-errc:
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errc)
	if err == nil {
		err = <-errc
	}
	return err
}

func prepareChurnNamespace(ctx context.Context, client kubernetes.Interface) error {
	_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: churnNS}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", churnNS, err)
	}
	// Pods are refused until the controller manager made the namespace's
	// default service account.
	return localcluster.WaitFor(ctx, 2*time.Minute, "the default service account of namespace "+churnNS, func() (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(churnNS).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
}

func nodeReady(ctx context.Context, client kubernetes.Interface, name string) (bool, error) {
	n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, nil
		}
	}
	return false, nil
}

// nodeClients are a node's API and event clients.
type nodeClients struct {
	api, events kubernetes.Interface
	// requests counts both clients' requests.
	requests *requestCounter
}

// newNodeClients makes a node's clients as `vk-applevm node` makes its
// own from a kubeconfig (node.KubeletRateLimits), their requests counted.
func newNodeClients(rc *rest.Config) (nodeClients, error) {
	c := nodeClients{requests: &requestCounter{}}
	api, events := node.KubeletRateLimits(rc)
	api.Wrap(c.requests.wrap)
	events.Wrap(c.requests.wrap)
	var err error
	if c.api, err = kubernetes.NewForConfig(api); err != nil {
		return c, err
	}
	c.events, err = kubernetes.NewForConfig(events)
	return c, err
}

// startOurNode runs vk-applevm's node in this process on the instant
// runtime until ctx ends.
func startOurNode(ctx context.Context, clients nodeClients, work string, log *slog.Logger) (*churnVariant, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	rt := newInstantRuntime()
	cfg := node.DefaultConfig()
	cfg.NodeName = churnNodeOurs
	cfg.Client, cfg.EventClient = clients.api, clients.events
	cfg.ListenAddr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	cfg.NodeIP, cfg.Hostname = "127.0.0.1", churnNodeOurs
	cfg.ServingCSR, cfg.RotateCertificates = false, false
	cfg.Taint = ""
	cfg.Reserved = nil
	cfg.DiskPressurePercent, cfg.DiskMinFreeBytes = 1, 1
	// The node's log at warnings only (unless -v): node.Run makes it
	// virtual-kubelet's logger too, so the mock's node logs through it
	// alike.
	cfg.Logger = log
	if !log.Enabled(ctx, slog.LevelDebug) {
		cfg.Logger = slog.New(warnings{log.Handler()})
	}
	cfg.Provider = provider.Config{
		Root: filepath.Join(work, "churn-root"), Runtime: rt,
		DefaultMemoryBytes: 16 << 20, MaxCPUs: 2, // the instant VMs cost nothing
	}
	errc := make(chan error, 1)
	go func() { errc <- node.Run(ctx, cfg) }()
	go func() {
		if err := <-errc; err != nil && ctx.Err() == nil {
			log.Error("vk-applevm node of the churn benchmark ended", "err", err)
		}
	}()
	return &churnVariant{name: "vk-applevm (instant runtime)", node: churnNodeOurs, leftover: func() string {
		if n := rt.live(); n > 0 {
			return fmt.Sprintf("%d VMs", n)
		}
		return ""
	}}, nil
}

// startMockNode runs the mock provider behind nodeutil.NewNode, the way
// virtual-kubelet's own command runs it, until ctx ends. Its node offers
// what ours does (pods, CPU, memory), so the scheduler and admission see
// the same.
func startMockNode(ctx context.Context, clients nodeClients) (*churnVariant, error) {
	mock := newMockProvider()
	// Events through the event client, as our node's: nodeutil would
	// record them through its one client.
	eb := record.NewBroadcaster(record.WithContext(ctx))
	eb.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: clients.events.CoreV1().Events(metav1.NamespaceAll)})
	context.AfterFunc(ctx, eb.Shutdown)
	n, err := nodeutil.NewNode(churnNodeMock, func(nodeutil.ProviderConfig) (nodeutil.Provider, vknode.NodeProvider, error) {
		return mock, nil, nil
	}, nodeutil.WithClient(clients.api), func(nc *nodeutil.NodeConfig) error {
		nc.HTTPListenAddr = "127.0.0.1:0" // no TLS config: no HTTP server
		nc.EventRecorder = eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: path.Join(churnNodeMock, "pod-controller")})
		res := corev1.ResourceList{
			corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceCPU: resource.MustParse("2"),
			corev1.ResourceMemory: resource.MustParse("24Gi"),
		}
		nc.NodeSpec.Status.Capacity, nc.NodeSpec.Status.Allocatable = res, res
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("build the mock node: %w", err)
	}
	go func() { _ = n.Run(ctx) }()
	if err := n.WaitReady(ctx, 2*time.Minute); err != nil {
		return nil, fmt.Errorf("mock node: %w", err)
	}
	return &churnVariant{name: "virtual-kubelet's mock provider", node: churnNodeMock, leftover: func() string {
		if pods, _ := mock.GetPods(ctx); len(pods) > 0 {
			return fmt.Sprintf("%d pods", len(pods))
		}
		return ""
	}}, nil
}

// warnings passes on what is at least a warning.
type warnings struct{ slog.Handler }

func (w warnings) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnings) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnings{w.Handler.WithAttrs(attrs)}
}
func (w warnings) WithGroup(name string) slog.Handler { return warnings{w.Handler.WithGroup(name)} }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
