package provider

import (
	"bytes"
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

	"github.com/vk-applevm/vk-applevm/container"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probe runs a container instance's startup, readiness and liveness probes
// until ctx ends, setting Started and Ready; onKill is called when a
// liveness (or startup) probe gives up on the container.
func (w *podWorker) probe(ctx context.Context, c *ctrState, sb Sandbox, spec corev1.Container, markStarted func(), onKill func(string)) {
	setStarted := func() {
		w.mu.Lock()
		changed := !c.Started
		c.Started = true
		if spec.ReadinessProbe == nil {
			c.Ready = true
		}
		w.mu.Unlock()
		markStarted()
		if changed {
			w.publish()
		}
	}
	if p := spec.StartupProbe; p != nil {
		if !w.probeLoop(ctx, c, sb, spec, p, "Startup", nil, onKill) {
			return
		}
	}
	setStarted()
	done := make(chan struct{})
	if p := spec.ReadinessProbe; p != nil {
		go func() {
			defer close(done)
			w.probeLoop(ctx, c, sb, spec, p, "Readiness", func(ok bool) {
				w.mu.Lock()
				changed := c.Ready != ok && c.Running != nil
				if c.Running != nil {
					c.Ready = ok
				}
				w.mu.Unlock()
				if changed {
					w.publish()
				}
			}, nil)
		}()
	} else {
		close(done)
	}
	if p := spec.LivenessProbe; p != nil {
		w.probeLoop(ctx, c, sb, spec, p, "Liveness", nil, onKill)
	}
	<-done
}

// probeLoop runs p every period after its initial delay. onResult (may be
// nil) gets each result once the success or failure threshold is met; when
// failures reach the threshold and onKill is set, the container is killed.
// It returns true when a startup probe succeeded.
func (w *podWorker) probeLoop(ctx context.Context, c *ctrState, sb Sandbox, spec corev1.Container, p *corev1.Probe, kind string, onResult func(bool), onKill func(string)) bool {
	period := secondsOr(p.PeriodSeconds, 10)
	timeout := secondsOr(p.TimeoutSeconds, 1)
	successThreshold := max(int(p.SuccessThreshold), 1)
	failureThreshold := int(p.FailureThreshold)
	if failureThreshold <= 0 {
		failureThreshold = 3
	}
	if !sleepCtx(ctx, time.Duration(p.InitialDelaySeconds)*time.Second) {
		return false
	}
	var successes, failures int
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := w.runProbe(pctx, sb, spec, &p.ProbeHandler)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			successes, failures = successes+1, 0
			if successes >= successThreshold {
				if kind == "Startup" {
					return true
				}
				if onResult != nil {
					onResult(true)
				}
			}
		} else {
			successes, failures = 0, failures+1
			w.eventf(corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %v", kind, err)
			if failures >= failureThreshold {
				if onResult != nil {
					onResult(false)
				}
				if onKill != nil {
					onKill(fmt.Sprintf("Container %s failed %s probe, will be restarted", c.Name, strings.ToLower(kind)))
					return false
				}
			}
		}
		if !sleepCtx(ctx, period) {
			return false
		}
	}
}

func secondsOr(v int32, def int) time.Duration {
	if v <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(v) * time.Second
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runProbe performs one check; nil means healthy.
func (w *podWorker) runProbe(ctx context.Context, sb Sandbox, spec corev1.Container, h *corev1.ProbeHandler) error {
	switch {
	case h.Exec != nil:
		return w.execCheck(ctx, sb, spec, h.Exec.Command)
	case h.HTTPGet != nil:
		return httpCheck(ctx, sb, spec, h.HTTPGet)
	case h.TCPSocket != nil:
		port, err := resolvePort(h.TCPSocket.Port, spec)
		if err != nil {
			return err
		}
		host := h.TCPSocket.Host
		if host == "" {
			host = sb.IP()
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("dial tcp %s:%d: %w", host, port, err)
		}
		return conn.Close()
	case h.GRPC != nil:
		return grpcCheck(ctx, sb.IP(), h.GRPC)
	}
	return fmt.Errorf("probe has no handler")
}

var probeSeq = make(chan int, 1)

func init() { probeSeq <- 0 }

// probeID gives every probe exec a unique process id.
func probeID() string {
	n := <-probeSeq
	probeSeq <- n + 1
	return "probe-" + strconv.Itoa(n)
}

func httpCheck(ctx context.Context, sb Sandbox, spec corev1.Container, g *corev1.HTTPGetAction) error {
	port, err := resolvePort(g.Port, spec)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = sb.IP()
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
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
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
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

func grpcCheck(ctx context.Context, ip string, g *corev1.GRPCAction) error {
	conn, err := grpc.NewClient(net.JoinHostPort(ip, strconv.Itoa(int(g.Port))), grpc.WithTransportCredentials(insecure.NewCredentials()))
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

// execCheck runs command in the container like its main process; a
// non-zero exit is an error carrying the start of its output.
func (w *podWorker) execCheck(ctx context.Context, sb Sandbox, spec corev1.Container, command []string) error {
	var out bytes.Buffer
	proc := w.execConfig(spec.Name, command)
	proc.ID = probeID()
	exit, err := sb.Exec(ctx, proc, container.IO{Stdout: &limited{w: &out, n: 10 << 10}, Stderr: &limited{w: &out, n: 10 << 10}})
	if err != nil {
		return err
	}
	if exit.Code != 0 {
		return fmt.Errorf("command %q exited with %d: %s", command, exit.Code, strings.TrimSpace(out.String()))
	}
	return nil
}

// runHook executes a postStart or preStop handler.
func (w *podWorker) runHook(ctx context.Context, sb Sandbox, spec corev1.Container, h *corev1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		return w.execCheck(ctx, sb, spec, h.Exec.Command)
	case h.HTTPGet != nil:
		return httpCheck(ctx, sb, spec, h.HTTPGet)
	case h.Sleep != nil:
		sleepCtx(ctx, time.Duration(h.Sleep.Seconds)*time.Second)
		return nil
	case h.TCPSocket != nil:
		return fmt.Errorf("tcpSocket lifecycle hooks are deprecated and not supported")
	}
	return fmt.Errorf("lifecycle hook has no handler")
}

// limited writes at most n bytes and silently drops the rest.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if len(q) > l.n {
		q = q[:l.n]
	}
	l.n -= len(q)
	if _, err := l.w.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}
