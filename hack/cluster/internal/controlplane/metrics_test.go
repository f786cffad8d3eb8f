package controlplane

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
)

func TestMetricsServerFlags(t *testing.T) {
	c := testConfig(t)
	c.MetricsServer, c.MetricResolution = true, 15*time.Second
	p := newPaths(c, &pki.Files{CA: "/p/ca", MetricsServer: "/p/metrics-server"})
	args := metricsServer(p).args
	for _, want := range []string{
		"--bind-address=10.201.0.2",
		"--secure-port=4443",
		"--tls-cert-file=/p/metrics-server.crt",
		"--kubeconfig=" + p.metricsServer,
		"--authentication-kubeconfig=" + p.metricsServer,
		"--authorization-kubeconfig=" + p.metricsServer,
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority=/p/ca.crt",
		"--metric-resolution=15s",
		"--kubelet-request-timeout=7.5s",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("metrics-server lacks %s; args: %v", want, args)
		}
	}
	// The aggregator must dial endpoints itself: nothing routes ClusterIPs here.
	if !slices.Contains(apiserver(p).args, "--enable-aggregator-routing=true") {
		t.Error("kube-apiserver would proxy metrics.k8s.io to a ClusterIP nobody routes")
	}
}

// metrics-server exits unless its kubelet timeout is at most 9/10 of the
// resolution.
func TestKubeletRequestTimeoutFitsResolution(t *testing.T) {
	for _, res := range []time.Duration{MinMetricResolution, 15 * time.Second, time.Minute} {
		if got := kubeletRequestTimeout(res); got > res*9/10 || got <= 0 || got > 10*time.Second {
			t.Errorf("resolution %v: kubelet timeout %v", res, got)
		}
	}
}

func TestValidateMetricResolution(t *testing.T) {
	c := testConfig(t)
	c.MetricsServer, c.MetricResolution = true, 5*time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--metric-resolution") {
		t.Errorf("5s resolution accepted: %v", err)
	}
	c.MetricsServer = false // irrelevant when metrics-server is off
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

// decode round-trips an object through its JSON, as the apiserver sees it.
func decode(t *testing.T, o object) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(o.json()), &m); err != nil {
		t.Fatalf("%s: %v", o.what, err)
	}
	return m
}

func get(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// The aggregator resolves APIService port → Service port → EndpointSlice
// port by name (k8s.io/apiserver pkg/util/proxy ResolveEndpoint): all three
// must line up, and the slice must carry the service-name label.
func TestMetricsEndpointLinesUp(t *testing.T) {
	objs := metricsServerEndpoint(net.ParseIP("10.201.0.2"))
	svc, slice := decode(t, objs[0]), decode(t, objs[1])
	api := decode(t, metricsAPIServiceObject([]byte("CA PEM")))

	apiPort := get(api, "spec", "service", "port")
	svcPort := get(svc, "spec", "ports").([]any)[0].(map[string]any)
	if svcPort["port"] != apiPort || get(svc, "spec", "selector") != nil {
		t.Errorf("service port %v (selector %v) vs APIService port %v", svcPort["port"], get(svc, "spec", "selector"), apiPort)
	}
	slicePort := get(slice, "ports").([]any)[0].(map[string]any)
	if slicePort["name"] != svcPort["name"] || slicePort["port"] != float64(MetricsServerPort) || svcPort["targetPort"] != slicePort["port"] {
		t.Errorf("slice port %v does not match service port %v", slicePort, svcPort)
	}
	if get(slice, "metadata", "labels", "kubernetes.io/service-name") != get(svc, "metadata", "name") ||
		get(slice, "metadata", "namespace") != get(svc, "metadata", "namespace") ||
		get(api, "spec", "service", "name") != get(svc, "metadata", "name") {
		t.Error("Service, EndpointSlice and APIService do not name each other")
	}
	ep := get(slice, "endpoints").([]any)[0].(map[string]any)
	if ep["addresses"].([]any)[0] != "10.201.0.2" || get(ep, "conditions", "ready") != true {
		t.Errorf("endpoint %v", ep)
	}
	if ca, _ := base64.StdEncoding.DecodeString(get(api, "spec", "caBundle").(string)); string(ca) != "CA PEM" {
		t.Errorf("caBundle decodes to %q", ca)
	}
	// The aggregator verifies the serving cert as <service>.<namespace>.svc.
	want := get(svc, "metadata", "name").(string) + "." + get(svc, "metadata", "namespace").(string) + ".svc"
	if !slices.Contains(metricsServerDNSNames(), want) {
		t.Errorf("serving cert names %v lack %s", metricsServerDNSNames(), want)
	}
}

func TestMetricsServerRBAC(t *testing.T) {
	var roles, bindings []string
	for _, o := range metricsServerRBAC() {
		m := decode(t, o)
		switch m["kind"] {
		case "ClusterRole":
			roles = append(roles, get(m, "metadata", "name").(string))
		case "ClusterRoleBinding", "RoleBinding":
			subj := m["subjects"].([]any)[0].(map[string]any)
			if subj["kind"] != "User" || subj["name"] != pki.MetricsServerUser {
				t.Errorf("%s binds %v, not the metrics-server user", o.what, subj)
			}
			bindings = append(bindings, get(m, "roleRef", "name").(string))
		}
	}
	for _, want := range []string{"system:metrics-server", "system:aggregated-metrics-reader"} {
		if !slices.Contains(roles, want) {
			t.Errorf("role %s missing (have %v)", want, roles)
		}
	}
	for _, want := range []string{"system:metrics-server", "system:auth-delegator", "extension-apiserver-authentication-reader"} {
		if !slices.Contains(bindings, want) {
			t.Errorf("binding to %s missing (have %v)", want, bindings)
		}
	}
	rules := decode(t, metricsServerRBAC()[0])["rules"].([]any)
	var resources []any
	for _, r := range rules {
		resources = append(resources, r.(map[string]any)["resources"].([]any)...)
	}
	for _, want := range []string{"nodes/metrics", "nodes/stats", "nodes", "pods"} {
		if !slices.Contains(resources, any(want)) {
			t.Errorf("system:metrics-server does not grant %s", want)
		}
	}
}

func TestAvailableCondition(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
		why  string
	}{
		{`{"status":{"conditions":[{"type":"Available","status":"True","reason":"Passed","message":"all checks passed"}]}}`, true, "Passed"},
		{`{"status":{"conditions":[{"type":"Available","status":"False","reason":"FailedDiscoveryCheck","message":"no route"}]}}`, false, "FailedDiscoveryCheck: no route"},
		{`{"status":{}}`, false, "no Available condition"},
		{`not json`, false, "decoding"},
	} {
		ok, why := availableCondition([]byte(tc.body))
		if ok != tc.ok || !strings.Contains(why, tc.why) {
			t.Errorf("%s: got %v %q, want %v %q", tc.body, ok, why, tc.ok, tc.why)
		}
	}
}
