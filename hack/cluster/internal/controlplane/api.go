package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/cluster/internal/pki"
)

// api is a minimal admin client for the handful of calls `up` makes. Plain
// net/http keeps client-go (and its build time) out of the tool itself.
type api struct {
	base string
	c    *http.Client
}

func newAPI(base string, f *pki.Files) (*api, error) {
	caPEM, err := os.ReadFile(pki.Crt(f.CA))
	if err != nil {
		return nil, fmt.Errorf("reading cluster CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", pki.Crt(f.CA))
	}
	cert, err := tls.LoadX509KeyPair(pki.Crt(f.Admin), pki.Key(f.Admin))
	if err != nil {
		return nil, fmt.Errorf("loading admin client cert: %w", err)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		// Fresh connections each poll: a half-started apiserver may reset them.
		DisableKeepAlives: true,
	}
	// Short: `up` polls, and checks between polls whether a component died.
	return &api{base: base, c: &http.Client{Transport: tr, Timeout: 2 * time.Second}}, nil
}

// do returns the status code and body of one request.
func (a *api) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// exists reports whether GET path answers 200.
func (a *api) exists(ctx context.Context, path string) bool {
	code, _, err := a.do(ctx, http.MethodGet, path, nil)
	return err == nil && code == http.StatusOK
}

// ensure creates an object unless it exists (409 counts as success).
func (a *api) ensure(ctx context.Context, collection, obj string) error {
	code, body, err := a.do(ctx, http.MethodPost, collection, []byte(obj))
	if err != nil {
		return fmt.Errorf("POST %s: %w", collection, err)
	}
	if code != http.StatusCreated && code != http.StatusConflict && code != http.StatusOK {
		return fmt.Errorf("POST %s: HTTP %d: %s", collection, code, strings.TrimSpace(string(body)))
	}
	return nil
}
