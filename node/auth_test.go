package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// getOnly authenticates everyone and allows only `get` on nodes/proxy
// (and everything but proxy), as a monitoring role does.
type getOnly struct {
	nodeutil.NodeRequestAttr
	authorizer.AuthorizerFunc
	seen []authorizer.Attributes
}

func (g *getOnly) AuthenticateRequest(*http.Request) (*authenticator.Response, bool, error) {
	return &authenticator.Response{User: &user.DefaultInfo{Name: "monitor"}}, true, nil
}

func (g *getOnly) authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	g.seen = append(g.seen, a)
	if a.GetSubresource() == "proxy" && a.GetVerb() != "get" {
		return authorizer.DecisionDeny, "", nil
	}
	return authorizer.DecisionAllow, "", nil
}

func TestStreamsNeedCreateWhateverTheMethod(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		verb         string
		code         int
	}{
		{http.MethodGet, "/exec/ns/pod/c?command=sh", "create", http.StatusForbidden}, // a WebSocket upgrade
		{http.MethodPost, "/exec/ns/pod/c?command=sh", "create", http.StatusForbidden},
		{http.MethodGet, "/attach/ns/pod/c", "create", http.StatusForbidden},
		{http.MethodGet, "/portForward/ns/pod", "create", http.StatusForbidden},
		{http.MethodPost, "/run/ns/pod/c", "create", http.StatusForbidden},
		{http.MethodGet, "/pods", "get", http.StatusOK},
		{http.MethodGet, "/containerLogs/ns/pod/c", "get", http.StatusOK},
		{http.MethodGet, "/stats/summary", "get", http.StatusOK},
		{http.MethodGet, "/executive", "get", http.StatusOK}, // not a stream path
	} {
		g := &getOnly{NodeRequestAttr: nodeutil.NodeRequestAttr{NodeName: "n"}}
		g.AuthorizerFunc = g.authorize
		h := nodeutil.WithAuth(streamsNeedCreate{g}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code || len(g.seen) != 1 || g.seen[0].GetVerb() != tc.verb {
			t.Errorf("%s %s: HTTP %d with verb %v, want %d with %q", tc.method, tc.path, rec.Code, g.seen, tc.code, tc.verb)
		}
	}
}
