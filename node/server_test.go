package node

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/provider"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/transport/spdy"
)

// idleClose opens an SPDY port-forward connection to path on srv, sends
// nothing, and returns how long the server took to close it.
func idleClose(t *testing.T, srv *httptest.Server, path string) time.Duration {
	t.Helper()
	rt, upgrader, err := spdy.RoundTripperFor(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL + path)
	start := time.Now()
	conn, proto, err := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u).Dial("portforward.k8s.io")
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	defer conn.Close()
	if proto != "portforward.k8s.io" {
		t.Fatalf("negotiated %q", proto)
	}
	select {
	case <-conn.CloseChan():
		return time.Since(start)
	case <-time.After(10 * time.Second):
		return time.Since(start)
	}
}

// TestStreamIdleTimeoutsReachTheHandlers serves the routes with a short
// idle and a long creation timeout and checks that an idle port-forward
// connection closes after the idle one: virtual-kubelet v1.14.1 passes
// port-forward's two timeouts crossed, which attachRoutes undoes.
func TestStreamIdleTimeoutsReachTheHandlers(t *testing.T) {
	pcfg := provider.Config{NodeName: "mac", Root: t.TempDir(), Runtime: &stubRuntime{}, Recorder: record.NewFakeRecorder(10)}
	client := fake.NewClientset()
	f := informers.NewSharedInformerFactory(client, 0)
	pcfg.Objects = newAPIObjects(client, f.Core().V1().Services().Lister())
	p, err := provider.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	attachRoutes(mux, p, f.Core().V1().Pods().Lister(), streamTimeouts{idle: 300 * time.Millisecond, creation: time.Minute})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	if d := idleClose(t, srv, "/portForward/ns/web"); d >= 10*time.Second {
		t.Fatalf("idle port-forward connection closed after %v; the idle timeout is 300ms (creation 1m)", d)
	}
}
