package image

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ParseReference normalises an image reference the way Docker does:
// "busybox" is index.docker.io/library/busybox:latest.
func ParseReference(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	return r, nil
}

// parseReference is ParseReference marking loopback and listed insecure
// registries, so go-containerregistry may fall back to plain HTTP for them
// (on its own it does so only for some spellings of loopback).
func (s *Store) parseReference(ref string) (name.Reference, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if reg := r.Context().RegistryStr(); s.insecure[reg] || isLoopbackHost(reg) {
		return name.ParseReference(ref, name.Insecure)
	}
	return r, nil
}

// isLoopbackHost says whether a registry host[:port] is on loopback, where
// Docker talks plain HTTP without being told (its default insecure ranges
// are 127.0.0.0/8 and ::1).
func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// registryTransport enforces the store's HTTP policy on every request
// go-containerregistry makes. go-containerregistry itself also falls back to
// plain HTTP for RFC 1918 addresses, which we refuse: only loopback and the
// explicitly insecure registries may be reached without TLS. Insecure
// registries also skip certificate verification, as Docker's
// insecure-registries setting does.
type registryTransport struct {
	secure, insecureTLS http.RoundTripper
	insecure            map[string]bool
}

func newRegistryTransport(insecure map[string]bool) *registryTransport {
	base, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		base = http.DefaultTransport.(*http.Transport)
	}
	insecureTLS := base.Clone()
	insecureTLS.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for registries the operator listed as insecure
	return &registryTransport{secure: base.Clone(), insecureTLS: insecureTLS, insecure: insecure}
}

func (t *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	listed := t.insecure[host]
	if req.URL.Scheme == "http" && !listed && !isLoopbackHost(host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s (add it to the insecure registries to allow it)", ErrPlainHTTP, host)
	}
	if listed {
		return t.insecureTLS.RoundTrip(req)
	}
	return t.secure.RoundTrip(req)
}
