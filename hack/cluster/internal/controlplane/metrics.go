package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
)

// metrics-server serves metrics.k8s.io through the apiserver's aggregation
// layer. There is no kube-proxy and no pod network here: it runs as one more
// detached process in the namespace, and a selector-less Service plus a
// hand-made EndpointSlice point the aggregator at the namespace address
// (kube-apiserver runs with --enable-aggregator-routing, so it dials the
// endpoint, never the ClusterIP).
const (
	// MetricsServerPort: upstream's manifests use 10250 (their pod has its
	// own IP), but here the node serves :10250 on the same address.
	MetricsServerPort = 4443
	// MinMetricResolution is metrics-server's own lower bound (its options
	// validation rejects less).
	MinMetricResolution = 10 * time.Second

	metricsNamespace  = "kube-system"
	metricsService    = "metrics-server"
	metricsAPIService = "v1beta1.metrics.k8s.io"
	// The Service's port; the aggregator looks the APIService's port up
	// among the Service's ports and then the EndpointSlice port of that name.
	metricsServicePort = 443
	metricsPortName    = "https"
)

// MetricsServer is what `up` and `status` report about metrics-server.
type MetricsServer struct {
	URL        string `json:"url"`        // its own address, https://<ip>:4443
	APIService string `json:"apiService"` // v1beta1.metrics.k8s.io
	Kubeconfig string `json:"kubeconfig"` // its identity (pki.MetricsServerUser)
	Resolution string `json:"resolution"` // --metric-resolution
	Available  bool   `json:"available"`  // the APIService's Available condition
}

// metricsServerDNSNames are the names the aggregator verifies
// (<service>.<namespace>.svc) plus the longer forms clients may use.
func metricsServerDNSNames() []string {
	svc := metricsService + "." + metricsNamespace + ".svc"
	return []string{svc, svc + ".cluster.local"}
}

func metricsServer(p paths) component {
	f := p.pki
	return component{"metrics-server", []string{
		"--bind-address=" + p.advertise,
		fmt.Sprintf("--secure-port=%d", MetricsServerPort),
		"--tls-cert-file=" + pki.Crt(f.MetricsServer),
		"--tls-private-key-file=" + pki.Key(f.MetricsServer),
		// One identity for the apiserver (informers, TokenReview,
		// SubjectAccessReview, the extension-apiserver-authentication
		// ConfigMap with the front-proxy CA) and for the node's :10250.
		"--kubeconfig=" + p.metricsServer,
		"--authentication-kubeconfig=" + p.metricsServer,
		"--authorization-kubeconfig=" + p.metricsServer,
		// The node registers only an InternalIP, and its serving cert
		// (issued by pki, signed by the cluster CA) names that IP.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority=" + pki.Crt(f.CA),
		"--metric-resolution=" + p.metricResolution.String(),
		"--kubelet-request-timeout=" + kubeletRequestTimeout(p.metricResolution).String(),
		"--profiling=false",
		fmt.Sprintf("--v=%d", p.verbosity),
	}}
}

// kubeletRequestTimeout is metrics-server's default (10s) unless that breaks
// its rule timeout <= 9/10 of the resolution (options.validate, v0.9.0):
// then half the resolution, ample for a node on the same host.
func kubeletRequestTimeout(resolution time.Duration) time.Duration {
	return min(10*time.Second, resolution/2)
}

// object is one API object to create: the collection to POST to and its JSON.
type object struct {
	what, collection string
	body             map[string]any
}

func (o object) json() string {
	b, err := json.Marshal(o.body)
	if err != nil { // only maps, strings, numbers and bools: cannot happen
		panic(fmt.Sprintf("encoding %s: %v", o.what, err))
	}
	return string(b)
}

func meta(name string, extra map[string]any) map[string]any {
	m := map[string]any{"name": name}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func ref(kind, name string) map[string]any {
	return map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}
}

var metricsUser = []map[string]any{{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": pki.MetricsServerUser}}

// metricsServerRBAC is what upstream's manifests (manifests/base/rbac.yaml,
// v0.9.0) grant the metrics-server ServiceAccount, here for its client
// certificate's user, plus nodes/stats (older scrape path, Summary API).
func metricsServerRBAC() []object {
	const rbac = "/apis/rbac.authorization.k8s.io/v1"
	rule := func(resources []string, verbs ...string) map[string]any {
		return map[string]any{"apiGroups": []string{""}, "resources": resources, "verbs": verbs}
	}
	return []object{
		{"the metrics-server role", rbac + "/clusterroles", map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": meta("system:metrics-server", nil),
			"rules": []any{
				rule([]string{"nodes/metrics", "nodes/stats"}, "get"),
				rule([]string{"pods", "nodes"}, "get", "list", "watch"),
			},
		}},
		{"the metrics-server role binding", rbac + "/clusterrolebindings", map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": meta("system:metrics-server", nil),
			"roleRef":  ref("ClusterRole", "system:metrics-server"), "subjects": metricsUser,
		}},
		// Lets view/edit/admin users (not only system:masters) run kubectl top.
		{"the aggregated metrics reader role", rbac + "/clusterroles", map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
			"metadata": meta("system:aggregated-metrics-reader", map[string]any{"labels": map[string]string{
				"rbac.authorization.k8s.io/aggregate-to-view":  "true",
				"rbac.authorization.k8s.io/aggregate-to-edit":  "true",
				"rbac.authorization.k8s.io/aggregate-to-admin": "true",
			}}),
			"rules": []any{map[string]any{"apiGroups": []string{"metrics.k8s.io"},
				"resources": []string{"pods", "nodes"}, "verbs": []string{"get", "list", "watch"}}},
		}},
		// TokenReview and SubjectAccessReview for requests it serves.
		{"the auth-delegator binding", rbac + "/clusterrolebindings", map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": meta("metrics-server:system:auth-delegator", nil),
			"roleRef":  ref("ClusterRole", "system:auth-delegator"), "subjects": metricsUser,
		}},
		// The extension-apiserver-authentication ConfigMap: client CA and
		// the front-proxy (request header) CA and names.
		{"the authentication reader binding", rbac + "/namespaces/kube-system/rolebindings", map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
			"metadata": meta("metrics-server-auth-reader", map[string]any{"namespace": "kube-system"}),
			"roleRef":  ref("Role", "extension-apiserver-authentication-reader"), "subjects": metricsUser,
		}},
	}
}

// metricsServerEndpoint is the selector-less Service and the EndpointSlice
// that say metrics-server is at ip:MetricsServerPort.
func metricsServerEndpoint(ip net.IP) []object {
	return []object{
		{"the metrics-server Service", "/api/v1/namespaces/" + metricsNamespace + "/services", map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": meta(metricsService, map[string]any{"namespace": metricsNamespace}),
			"spec": map[string]any{"ports": []any{map[string]any{
				"name": metricsPortName, "port": metricsServicePort, "targetPort": MetricsServerPort, "protocol": "TCP",
			}}},
		}},
		{"the metrics-server EndpointSlice", "/apis/discovery.k8s.io/v1/namespaces/" + metricsNamespace + "/endpointslices", map[string]any{
			"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
			"metadata": meta(metricsService, map[string]any{"namespace": metricsNamespace, "labels": map[string]string{
				// The aggregator finds slices by this label.
				"kubernetes.io/service-name": metricsService,
				// Not "endpointslice-controller.k8s.io": the controllers leave it alone.
				"endpointslice.kubernetes.io/managed-by": "cluster.vk-applevm.io",
			}}),
			"addressType": "IPv4",
			"endpoints":   []any{map[string]any{"addresses": []string{ip.String()}, "conditions": map[string]any{"ready": true}}},
			"ports":       []any{map[string]any{"name": metricsPortName, "port": MetricsServerPort, "protocol": "TCP"}},
		}},
	}
}

// metricsAPIServiceObject registers metrics.k8s.io/v1beta1 with the
// aggregator. caPEM (the cluster CA) verifies metrics-server's serving cert.
func metricsAPIServiceObject(caPEM []byte) object {
	return object{"the " + metricsAPIService + " APIService", "/apis/apiregistration.k8s.io/v1/apiservices", map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": meta(metricsAPIService, nil),
		"spec": map[string]any{
			"group": "metrics.k8s.io", "version": "v1beta1",
			"service": map[string]any{"name": metricsService, "namespace": metricsNamespace, "port": metricsServicePort},
			// []byte marshals as base64, which is what caBundle is.
			"caBundle": caPEM,
			// Upstream's manifests use these priorities.
			"groupPriorityMinimum": 100, "versionPriority": 100,
		},
	}}
}

// ensureAll creates each object unless it exists.
func ensureAll(ctx context.Context, a *api, objs []object) error {
	for _, o := range objs {
		if err := a.ensure(ctx, o.collection, o.json()); err != nil {
			return fmt.Errorf("creating %s: %w", o.what, err)
		}
	}
	return nil
}

// prepareMetricsServer creates everything metrics-server needs before it
// starts: without its RBAC it cannot read the authentication ConfigMap and
// exits.
func prepareMetricsServer(ctx context.Context, a *api, ip net.IP) error {
	return ensureAll(ctx, a, append(metricsServerRBAC(), metricsServerEndpoint(ip)...))
}

// registerMetricsAPI creates the APIService. `up` calls it once metrics-server
// answers: the availability controller backs off exponentially (up to 30 s)
// while discovery fails, so registering early only delays Available.
func registerMetricsAPI(ctx context.Context, a *api, f *pki.Files) error {
	caPEM, err := os.ReadFile(pki.Crt(f.CA))
	if err != nil {
		return fmt.Errorf("reading cluster CA for the APIService: %w", err)
	}
	return ensureAll(ctx, a, []object{metricsAPIServiceObject(caPEM)})
}

// apiServiceAvailable reports the Available condition of the APIService
// name and, when not available, its reason and message.
func (a *api) apiServiceAvailable(ctx context.Context, name string) (bool, string) {
	code, body, err := a.do(ctx, http.MethodGet, "/apis/apiregistration.k8s.io/v1/apiservices/"+name, nil)
	if err != nil {
		return false, err.Error()
	}
	if code != http.StatusOK {
		return false, fmt.Sprintf("HTTP %d", code)
	}
	return availableCondition(body)
}

func availableCondition(apiServiceJSON []byte) (bool, string) {
	var svc struct {
		Status struct {
			Conditions []struct{ Type, Status, Reason, Message string } `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(apiServiceJSON, &svc); err != nil {
		return false, fmt.Sprintf("decoding APIService: %v", err)
	}
	for _, c := range svc.Status.Conditions {
		if c.Type == "Available" {
			return c.Status == "True", c.Reason + ": " + c.Message
		}
	}
	return false, "no Available condition yet"
}

// startMetricsAPI waits until the just started metrics-server answers /livez
// on its own address (it serves only after its informers synced, so this
// also proves its kubeconfig and RBAC), then registers the APIService.
func startMetricsAPI(ctx context.Context, w *waiter, a *api, p paths) (*MetricsServer, error) {
	ms := &MetricsServer{
		URL:        fmt.Sprintf("https://%s", net.JoinHostPort(p.advertise, fmt.Sprint(MetricsServerPort))),
		APIService: metricsAPIService, Kubeconfig: p.metricsServer, Resolution: p.metricResolution.String(),
	}
	// The admin identity and the cluster CA work here too: metrics-server
	// trusts the apiserver's client CA, and its cert is signed by the cluster CA.
	direct, err := newAPI(ms.URL, p.pki)
	if err != nil {
		return nil, err
	}
	if err := w.until(ctx, "metrics-server /livez", func() bool { return direct.exists(ctx, "/livez") }); err != nil {
		return nil, err
	}
	if err := registerMetricsAPI(ctx, a, p.pki); err != nil {
		return nil, err
	}
	return ms, nil
}
