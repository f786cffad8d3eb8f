package vswitch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/unixhttp"
)

// Client talks to the switch of a directory.
type Client struct {
	dir string
	api *unixhttp.Client
}

// NewClient returns a client of the switch in dir (which may not run yet).
func NewClient(dir string) *Client {
	return &Client{dir: dir, api: unixhttp.New("switch", filepath.Join(dir, CtlSocket), 4)}
}

// Dir is the switch's directory.
func (c *Client) Dir() string { return c.dir }

// PortsSocket is where shims plug VMs in.
func (c *Client) PortsSocket() string { return filepath.Join(c.dir, PortsSocket) }

// Close releases idle connections.
func (c *Client) Close() { c.api.CloseIdle() }

// Status asks the switch for its state; it fails when no switch runs.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.api.Call(ctx, http.MethodGet, "/status", nil, &st)
	return st, err
}

// SetEndpoint adds or replaces a VM's endpoint.
func (c *Client) SetEndpoint(ctx context.Context, ep Endpoint) error {
	return c.api.Call(ctx, http.MethodPut, "/endpoints/"+url.PathEscape(ep.ID), ep, nil)
}

// RemoveEndpoint forgets a VM (unplugging it).
func (c *Client) RemoveEndpoint(ctx context.Context, id string) error {
	return c.api.Call(ctx, http.MethodDelete, "/endpoints/"+url.PathEscape(id), nil, nil)
}

// SetListeners replaces the ports a VM's agent found listening.
func (c *Client) SetListeners(ctx context.Context, id string, ports []Port) error {
	if ports == nil {
		ports = []Port{}
	}
	return c.api.Call(ctx, http.MethodPut, "/endpoints/"+url.PathEscape(id)+"/listeners", ports, nil)
}

// SetServices replaces the Service table.
func (c *Client) SetServices(ctx context.Context, t ServiceTable) error {
	return c.api.Call(ctx, http.MethodPut, "/services", t, nil)
}

// SetHostPorts replaces the host ports owner publishes ("node" for the
// node's pods, a container's id for `vk-applevm run -p`); nil withdraws
// them. A port another owner publishes is refused.
func (c *Client) SetHostPorts(ctx context.Context, owner string, hps []HostPort) error {
	if hps == nil {
		hps = []HostPort{}
	}
	return c.api.Call(ctx, http.MethodPut, "/hostports/"+url.PathEscape(owner), hps, nil)
}

// Dial connects to addr inside the pod network, from the gateway: the
// connection reaches the VM of the pod that serves the port.
func (c *Client) Dial(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(c.dir, CtlSocket))
	if err != nil {
		return nil, fmt.Errorf("dial %v through the switch: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	q := url.Values{"network": {network}, "addr": {addr.String()}}
	req := "POST /dial?" + q.Encode() + " HTTP/1.1\r\nHost: switch\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dial %v through the switch: %w", addr, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dial %v through the switch: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		return nil, fmt.Errorf("dial %v through the switch: %s", addr, strings.TrimSpace(string(msg)))
	}
	_ = conn.SetDeadline(time.Time{})
	return &bufferedConn{Conn: conn, r: br}, nil
}

// Ensure returns a client of the switch of dir, starting the switch with
// cfg if none runs: command (the vk-applevm binary and its arguments, e.g.
// [exe, "switch", "--dir", dir]) runs detached in its own session, so it
// outlives the caller. A running switch with another subnet is an error.
func Ensure(ctx context.Context, dir string, cfg Config, command []string) (*Client, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("switch directory: %w", err)
	}
	c := NewClient(dir)
	if st, err := c.Status(ctx); err == nil {
		if st.Subnet != cfg.Subnet {
			return nil, fmt.Errorf("the switch in %s serves %v, not %v: stop it first", dir, st.Subnet, cfg.Subnet)
		}
		return c, nil
	}
	if err := WriteConfig(dir, cfg); err != nil {
		return nil, fmt.Errorf("write switch config: %w", err)
	}
	if err := Start(dir, command); err != nil {
		return nil, err
	}
	return c, c.WaitReady(ctx)
}

// Start runs command detached, logging to switch.log in dir.
func Start(dir string, command []string) error {
	if len(command) == 0 {
		return errors.New("start switch: no command")
	}
	logf, err := os.OpenFile(filepath.Join(dir, "switch.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start switch: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start switch: %w", err)
	}
	// Reap it if it exits while we live; it is not our child to wait for
	// otherwise (the session leader keeps running after we exit).
	go func() { _ = cmd.Wait() }()
	return nil
}

// WaitReady waits until the switch answers.
func (c *Client) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		_, err := c.Status(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			tail, _ := os.ReadFile(filepath.Join(c.dir, "switch.log"))
			if len(tail) > 2000 {
				tail = tail[len(tail)-2000:]
			}
			return fmt.Errorf("the switch in %s did not start: %w\n%s", c.dir, err, tail)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
