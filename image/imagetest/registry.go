package imagetest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is a real OCI distribution registry (go-containerregistry's
// in-memory pkg/registry) served over plain HTTP.
type Registry struct {
	// Addr is host:port, the registry part of image references.
	Addr string

	srv        *http.Server
	done       chan struct{}
	user, pass string

	mu   sync.Mutex
	hits map[string]int // "GET /v2/..." → count
}

type registryConfig struct {
	ln         net.Listener
	user, pass string
	middleware []func(http.Handler) http.Handler
}

// RegistryOption configures a Registry.
type RegistryOption func(*registryConfig)

// OnListener serves on ln (e.g. one opened inside a network namespace)
// instead of a new listener on 127.0.0.1:0.
func OnListener(ln net.Listener) RegistryOption {
	return func(c *registryConfig) { c.ln = ln }
}

// WithBasicAuth makes the registry demand HTTP basic auth (401 with a Basic
// challenge, as registries without a token service do). Push uses the
// credentials itself.
func WithBasicAuth(user, pass string) RegistryOption {
	return func(c *registryConfig) { c.user, c.pass = user, pass }
}

// WithMiddleware wraps the registry handler (inside auth, outside the
// registry), e.g. to corrupt or delay responses. The first is outermost.
func WithMiddleware(mw func(http.Handler) http.Handler) RegistryOption {
	return func(c *registryConfig) { c.middleware = append(c.middleware, mw) }
}

// NewRegistry starts a registry. Close stops it.
func NewRegistry(opts ...RegistryOption) (*Registry, error) {
	var cfg registryConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.ln == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen for test registry: %w", err)
		}
		cfg.ln = ln
	}
	r := &Registry{Addr: cfg.ln.Addr().String(), user: cfg.user, pass: cfg.pass, hits: map[string]int{}, done: make(chan struct{})}
	var h http.Handler = ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	for i := len(cfg.middleware) - 1; i >= 0; i-- {
		h = cfg.middleware[i](h)
	}
	if cfg.user != "" {
		h = basicAuth(cfg.user, cfg.pass, h)
	}
	r.srv = &http.Server{Handler: r.count(h), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(r.done)
		if err := r.srv.Serve(cfg.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("imagetest registry on %s: %v", r.Addr, err)
		}
	}()
	return r, nil
}

// ServeAlso serves the same registry (same content) on another listener,
// e.g. one inside a network namespace after pushing through the first.
// Close stops it too.
func (r *Registry) ServeAlso(ln net.Listener) {
	go func() {
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("imagetest registry on %s: %v", ln.Addr(), err)
		}
	}()
}

// StartRegistry starts a registry that stops when the test ends.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	r, err := NewRegistry(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Close stops the registry at once, dropping open connections. (Shutdown
// would wait 5 s for connections that never sent a request, such as the
// HTTPS probes go-containerregistry races against plain HTTP.)
func (r *Registry) Close() error {
	err := r.srv.Close()
	<-r.done
	return err
}

// Ref is the reference of name ("busybox:latest") in this registry.
func (r *Registry) Ref(name string) string { return r.Addr + "/" + name }

// PushImage uploads img as name ("repo[:tag]") and returns its reference.
func (r *Registry) PushImage(ctx context.Context, repoTag string, img v1.Image) (string, error) {
	ref, opts, err := r.target(ctx, repoTag)
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.String(), nil
}

// PushIndex uploads a multi-platform index as name and returns its reference.
func (r *Registry) PushIndex(ctx context.Context, repoTag string, idx v1.ImageIndex) (string, error) {
	ref, opts, err := r.target(ctx, repoTag)
	if err != nil {
		return "", err
	}
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.String(), nil
}

// Push is PushImage failing the test on error.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := r.PushImage(context.Background(), repoTag, img)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// PushIndexT is PushIndex failing the test on error.
func (r *Registry) PushIndexT(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref, err := r.PushIndex(context.Background(), repoTag, idx)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func (r *Registry) target(ctx context.Context, repoTag string) (name.Reference, []remote.Option, error) {
	// The registry speaks plain HTTP wherever it listens.
	ref, err := name.ParseReference(r.Ref(repoTag), name.Insecure)
	if err != nil {
		return nil, nil, fmt.Errorf("push %s: %w", repoTag, err)
	}
	opts := []remote.Option{remote.WithContext(ctx)}
	if r.user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.user, Password: r.pass}))
	}
	return ref, opts, nil
}

// Hits counts the requests seen with this method and URL path, e.g.
// ("GET", "/v2/busybox/blobs/sha256:...").
func (r *Registry) Hits(method, path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[method+" "+path]
}

// BlobGets counts GETs of a blob digest in any repository.
func (r *Registry) BlobGets(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.hits {
		if strings.HasPrefix(k, "GET /v2/") && strings.HasSuffix(k, "/blobs/"+digest) {
			n += v
		}
	}
	return n
}

// ResetHits forgets the counted requests.
func (r *Registry) ResetHits() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.hits)
}

func (r *Registry) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.hits[req.Method+" "+req.URL.Path]++
		r.mu.Unlock()
		next.ServeHTTP(w, req)
	})
}

func basicAuth(user, pass string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="imagetest"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		next.ServeHTTP(w, req)
	})
}
