package prober

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/clock"
)

// Check performs one probe; nil means healthy. timeout bounds it on clk.
func Check(ctx context.Context, clk clock.Clock, timeout time.Duration, t Target, spec corev1.Container, h *corev1.ProbeHandler) error {
	ctx, cancel := withTimeout(ctx, clk, timeout)
	defer cancel()
	switch {
	case h.Exec != nil:
		return execCheck(ctx, t, h.Exec.Command)
	case h.HTTPGet != nil:
		return httpCheck(ctx, t, spec, h.HTTPGet)
	case h.TCPSocket != nil:
		port, err := resolvePort(h.TCPSocket.Port, spec)
		if err != nil {
			return err
		}
		host := h.TCPSocket.Host
		if host == "" {
			host = t.Address()
		}
		conn, err := t.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("dial tcp %s:%d: %w", host, port, err)
		}
		return conn.Close()
	case h.GRPC != nil:
		return grpcCheck(ctx, t, h.GRPC)
	}
	return fmt.Errorf("probe has no handler")
}

// RunHook executes a postStart or preStop handler; a sleep action waits on
// clk.
func RunHook(ctx context.Context, clk clock.Clock, t Target, spec corev1.Container, h *corev1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		return execCheck(ctx, t, h.Exec.Command)
	case h.HTTPGet != nil:
		return httpCheck(ctx, t, spec, h.HTTPGet)
	case h.Sleep != nil:
		sleep(ctx, clk, time.Duration(h.Sleep.Seconds)*time.Second)
		return nil
	case h.TCPSocket != nil:
		return fmt.Errorf("tcpSocket lifecycle hooks are deprecated and not supported")
	}
	return fmt.Errorf("lifecycle hook has no handler")
}

// Target is the container instance a probe or hook acts on.
type Target interface {
	// Exec runs args like the container's main process (environment,
	// user, working directory) and returns its exit code and the start of
	// its output.
	Exec(ctx context.Context, args []string) (exitCode int, output []byte, err error)
	// Address is where HTTP, TCP and gRPC checks reach the container.
	Address() string
	// DialContext connects to an address for HTTP, TCP and gRPC checks:
	// the pod's through the pod network.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

func httpCheck(ctx context.Context, t Target, spec corev1.Container, g *corev1.HTTPGetAction) error {
	port, err := resolvePort(g.Port, spec)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = t.Address()
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
	if u.Path == "" {
		u.Path = "/"
	}
	if i := strings.IndexByte(g.Path, '?'); i >= 0 {
		u.Path, u.RawQuery = g.Path[:i], g.Path[i+1:]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	// The kubelet does not verify probe certificates and does not follow
	// redirects to other hosts.
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true, DialContext: t.DialContext},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Hostname() != host || len(via) >= 10 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Read a bounded part of the body so the connection can be reused, as
	// the kubelet does, but never report it: events and conditions are
	// readable by far more users than the pod's responses.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

func grpcCheck(ctx context.Context, t Target, g *corev1.GRPCAction) error {
	// passthrough: the address goes to the dialer as it is, no resolver.
	conn, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(t.Address(), strconv.Itoa(int(g.Port))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return t.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		return fmt.Errorf("grpc probe: %w", err)
	}
	defer conn.Close()
	svc := ""
	if g.Service != nil {
		svc = *g.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		return fmt.Errorf("grpc health check: %w", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("service unhealthy (responded with %q)", resp.Status)
	}
	return nil
}

// resolvePort turns a numeric or named port into a number using the
// container's declared ports.
func resolvePort(p intstr.IntOrString, spec corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range spec.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n < 65536 {
		return n, nil
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}

// execCheck runs command in the container; a non-zero exit is an error
// carrying the start of its output.
func execCheck(ctx context.Context, t Target, command []string) error {
	code, out, err := t.Exec(ctx, command)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("command %q exited with %d: %s", command, code, strings.TrimSpace(string(out)))
	}
	return nil
}

// Limited writes at most N bytes to W and silently drops the rest (the
// output kept of a probe or hook).
type Limited struct {
	W io.Writer
	N int
}

func (l *Limited) Write(p []byte) (int, error) {
	if l.N <= 0 {
		return len(p), nil
	}
	q := p
	if len(q) > l.N {
		q = q[:l.N]
	}
	l.N -= len(q)
	if _, err := l.W.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}
