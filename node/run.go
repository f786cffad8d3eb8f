package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"github.com/vk-applevm/vk-applevm/provider"
	"github.com/vk-applevm/vk-applevm/provider/podnet"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
)

// Run registers the node and runs it until ctx ends: the provider's pods,
// the node's status and lease, and the kubelet API.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.complete(); err != nil {
		return fmt.Errorf("node config: %w", err)
	}
	log := cfg.Logger.With("node", cfg.NodeName)
	useLogger(cfg.Logger)
	// Everything started here (status loop, CSR wait) ends with Run.
	ctx, cancel := context.WithCancel(loggerContext(ctx, log))
	defer cancel()

	client, eventClient := cfg.Client, cfg.EventClient
	var caFromKubeconfig []byte
	if client == nil {
		ac, err := newAPIClient(ctx, &cfg, log)
		if err != nil {
			return err
		}
		client, eventClient, caFromKubeconfig = ac.client, ac.events, ac.caPEM
		if ac.certs != nil {
			ac.certs.Start()
			defer ac.certs.Stop()
			log.Info("client certificate rotation on", "dir", cfg.CertDir)
		}
	}
	// One recorder for virtual-kubelet and the provider. Events carry the
	// kubelet's source component so `kubectl get events` reads as usual.
	eb := record.NewBroadcaster(record.WithContext(ctx))
	if eventClient == nil {
		eventClient = client
	}
	eb.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: eventClient.CoreV1().Events(metav1.NamespaceAll)})
	defer eb.Shutdown()
	recorder := eb.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: cfg.NodeName})

	if err := os.MkdirAll(cfg.Provider.Root, 0o755); err != nil {
		return fmt.Errorf("create state root: %w", err)
	}
	facts, err := gatherFacts(&cfg)
	if err != nil {
		return err
	}
	port, _ := cfg.listenPort()
	health := cfg.Health
	if health == nil {
		health = cfg.Provider.Runtime.Check
	}
	status := newNodeStatus(&cfg, newNodeObject(&cfg, facts, port), realHostReader{}, health)
	status.recorder = recorder
	status.evaluate(ctx) // the node registers with real conditions
	initial := status.node()
	if len(initial.Status.Capacity) == 0 {
		return errors.New(status.notReady)
	}

	pin := ""
	if cfg.CertDir != "" {
		pin = filepath.Join(cfg.CertDir, pinnedClientCA)
	}
	caPEM, caSource, err := clientCA(ctx, client, cfg.ClientCAFile, caFromKubeconfig, pin, log)
	if err != nil {
		log.Error("NO CLIENT CA: the API server's kubelet client certificate will not authenticate, so kubectl logs/exec fail with 401; pass --client-ca-file", "err", err)
	} else {
		log.Info("client certificates verified against the cluster CA", "source", caSource)
	}
	serving, err := setupServing(ctx, &cfg, client, certNames{NodeName: cfg.NodeName, Hostname: facts.Hostname, IPs: facts.IPs}, log)
	if err != nil {
		return err
	}
	auth, err := newAuth(client, cfg.NodeName, caPEM)
	if err != nil {
		return err
	}

	// The auth wrapper goes around the mux now; routes are added to the
	// same mux once the provider exists.
	mux := http.NewServeMux()
	netSync, startNetSync := podNetworkSync(&cfg, client, log)
	newProvider := func(pc nodeutil.ProviderConfig) (nodeutil.Provider, node.NodeProvider, error) {
		p, err := buildProvider(ctx, &cfg, pc, client, recorder, facts, initial, netSync)
		if err != nil {
			return nil, nil, err
		}
		startNetSync(ctx, p)
		attachRoutes(mux, p, pc.Pods, streamTimeouts{idle: cfg.StreamIdleTimeout, creation: cfg.StreamCreationTimeout})
		return p, status, nil
	}
	n, err := nodeutil.NewNode(cfg.NodeName, newProvider,
		// virtual-kubelet's informers get a client that does not ask for
		// what the Node authorizer refuses a node (see nodeScopedClient).
		nodeutil.WithClient(nodeScopedClient{client}),
		nodeutil.WithTLSConfig(tlsOptions(serving, caPEM)...),
		func(nc *nodeutil.NodeConfig) error {
			nc.NodeSpec = *initial
			nc.HTTPListenAddr = cfg.ListenAddr
			nc.Handler = nodeutil.WithAuth(auth, mux)
			nc.EventRecorder = recorder
			nc.SkipDownwardAPIResolution = true // the provider resolves env itself
			nc.NodeStatusUpdateErrorHandler = recreateNode(client, status)
			return nil
		})
	if err != nil {
		return fmt.Errorf("build node: %w", err)
	}
	go func() {
		select {
		case <-n.NodeController().Ready():
			status.markRegistered()
			if err := ensureTaint(ctx, client, cfg.NodeName, cfg.Taint); err != nil {
				log.Error("set the node's taint", "err", err)
			}
			log.Info("node registered", "ip", facts.IPs[0].String(), "listen", cfg.ListenAddr, "certificate", serving.Source())
		case <-ctx.Done():
		}
	}()
	if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("run node: %w", err)
	}
	return nil
}

// buildProvider completes the provider's config with what the node owns
// and re-attaches the VMs of an earlier run before pods are synced.
func buildProvider(ctx context.Context, cfg *Config, pc nodeutil.ProviderConfig, client kubernetes.Interface,
	recorder record.EventRecorder, facts hostFacts, initial *corev1.Node, netSync *podnet.Sync) (*provider.Provider, error) {
	c := cfg.Provider
	c.NodeName = cfg.NodeName
	c.NodeIP = facts.IPs[0].String()
	if netSync != nil {
		netSync.NodeIP = c.NodeIP
		c.OnStatus = netSync.Kick
	}
	c.Objects = newAPIObjects(client, pc.Services)
	c.Client = client
	c.Pods = pc.Pods
	c.Recorder = recorder
	c.Allocatable = initial.Status.Allocatable
	c.Logger = cfg.Logger.With("node", cfg.NodeName)
	if c.MaxCPUs == 0 {
		c.MaxCPUs = int(initial.Status.Capacity.Cpu().Value())
	}
	p, err := provider.New(c)
	if err != nil {
		return nil, fmt.Errorf("build provider: %w", err)
	}
	if err := p.Reconcile(ctx); err != nil {
		return nil, fmt.Errorf("reconcile VMs of an earlier run: %w", err)
	}
	if err := p.SweepPodDirs(ctx); err != nil {
		c.Logger.Warn("sweep pod directories", "err", err)
	}
	return p, nil
}

// recreateNode re-registers the node when someone deleted it; any other
// status update error is returned as is.
func recreateNode(client kubernetes.Interface, status *nodeStatus) node.ErrorHandler {
	return func(ctx context.Context, err error) error {
		if !apierrors.IsNotFound(err) {
			return err
		}
		n := status.node()
		if _, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("re-register deleted node %s: %w", n.Name, err)
		}
		return nil
	}
}

// ensureTaint puts the configured taint on a node registered by an earlier
// run (virtual-kubelet patches only status and metadata of an existing
// node), replacing another value of the same key. With no taint
// configured it removes DefaultTaint's key.
func ensureTaint(ctx context.Context, client kubernetes.Interface, name, taint string) error {
	want, err := parseTaint(taint)
	if err != nil {
		return err
	}
	key := want
	if key == nil {
		key, _ = parseTaint(DefaultTaint)
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var taints []corev1.Taint
		found := false
		for _, t := range n.Spec.Taints {
			switch {
			case t.Key != key.Key:
				taints = append(taints, t)
			case want != nil && !found && t.Value == want.Value && t.Effect == want.Effect:
				taints, found = append(taints, t), true
			}
		}
		if want != nil && !found {
			taints = append(taints, *want)
		}
		if len(taints) == len(n.Spec.Taints) && (want == nil || found) {
			return nil // nothing to change
		}
		n.Spec.Taints = taints
		_, err = client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
}
