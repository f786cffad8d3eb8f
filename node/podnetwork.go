package node

import (
	"context"
	"log/slog"
	"time"

	"github.com/vk-applevm/vk-applevm/provider"
	"github.com/vk-applevm/vk-applevm/provider/podnet"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The node does for its pods what kube-proxy and CoreDNS do for a kubelet's:
// it keeps the pod network's switch told of every Service and its ready
// endpoints, and of its pods' host ports (provider/podnet.Sync). Services
// a node may list; EndpointSlices it may not under the Node authorizer alone:
// kube-proxy's role, system:node-proxier, grants them
// (deploy/rbac/node-proxier.yaml binds it to the nodes).

// podNetworkSync returns the sync and the hook that kicks it on every pod
// status push; run starts it once the provider exists.
func podNetworkSync(cfg *Config, client kubernetes.Interface, log *slog.Logger) (*podnet.Sync, func(ctx context.Context, p *provider.Provider)) {
	if cfg.PodNetwork == nil {
		return nil, func(context.Context, *provider.Provider) {}
	}
	s := &podnet.Sync{Domain: cfg.Provider.ClusterDomain, Switch: cfg.PodNetwork, Log: log}
	run := func(ctx context.Context, p *provider.Provider) {
		s.Pods = func() []*corev1.Pod {
			pods, _ := p.GetPods(ctx)
			return pods
		}
		checkProxierRights(ctx, client, log)
		f := informers.NewSharedInformerFactory(client, 10*time.Minute)
		svc := f.Core().V1().Services()
		slices := f.Discovery().V1().EndpointSlices()
		kick := cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.Kick() },
			UpdateFunc: func(any, any) { s.Kick() },
			DeleteFunc: func(any) { s.Kick() },
		}
		_, _ = svc.Informer().AddEventHandler(kick)
		_, _ = slices.Informer().AddEventHandler(kick)
		s.Services, s.Slices = svc.Lister(), slices.Lister()
		f.Start(ctx.Done())
		go s.Run(ctx)
	}
	return s, run
}

// checkProxierRights warns once, saying how to fix it, when the node may not
// watch EndpointSlices: Services would resolve but never reach an endpoint.
func checkProxierRights(ctx context.Context, client kubernetes.Interface, log *slog.Logger) {
	for _, verb := range []string{"list", "watch"} {
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: verb, Group: "discovery.k8s.io", Resource: "endpointslices",
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			log.Warn("cannot check the node's right to watch EndpointSlices", "err", err)
			return
		}
		if !r.Status.Allowed {
			log.Error("the node may not " + verb + " EndpointSlices, so pods reach no Service endpoint: bind system:node-proxier to the node (kubectl apply -f deploy/rbac/node-proxier.yaml)")
			return
		}
	}
}
