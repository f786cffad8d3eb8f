package node

import (
	"testing"

	"k8s.io/client-go/rest"
)

// The node's clients are limited as the kubelet's are, each on its own,
// and the kubeconfig's config is left as it was.
func TestKubeletRateLimits(t *testing.T) {
	rc := &rest.Config{Host: "https://10.0.0.1:6443"}
	api, events := KubeletRateLimits(rc)
	if api.QPS != 50 || api.Burst != 100 || events.QPS != 50 || events.Burst != 100 {
		t.Errorf("api %v/%d, events %v/%d; want the kubelet's 50/100 each", api.QPS, api.Burst, events.QPS, events.Burst)
	}
	if api == events || api.Host != rc.Host || rc.QPS != 0 {
		t.Errorf("want two copies of the kubeconfig's config, that left alone")
	}
}
