package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/unixhttp"
)

// Client talks to the shim of one machine directory, from the process that
// launched it or from a later one (Connect).
type Client struct {
	dir string
	api *unixhttp.Client
}

func newClient(dir string) *Client {
	return &Client{dir: dir, api: unixhttp.New("shim API", filepath.Join(dir, apiSocket), 2)}
}

// Connect re-attaches to the machine in dir. If the shim has died without
// recording that the machine stopped, it returns the Client together with an
// error wrapping ErrShimDead, so the caller can still Delete.
func Connect(dir string) (*Client, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("connect to shim: %w", err)
	}
	c := newClient(dir)
	st, err := readState(dir)
	if errors.Is(err, ErrNoState) && fileExists(filepath.Join(dir, configFile)) {
		// Launched, but the shim never wrote its first state.
		return c, fmt.Errorf("connect to shim in %s: %w (no state written)", dir, ErrShimDead)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to shim: %w", err)
	}
	if st.Status == StatusStopped || isProcess(st.ShimPid, st.ShimStartTime) {
		return c, nil
	}
	if _, err := c.diskState(); err != nil {
		return c, fmt.Errorf("connect to shim in %s: %w", dir, err)
	}
	return c, nil
}

// Dir is the machine directory.
func (c *Client) Dir() string { return c.dir }

// Close releases the client's idle connections to the shim; the machine is
// not affected.
func (c *Client) Close() error {
	c.api.CloseIdle()
	return nil
}

// State returns the machine's state: from the shim, or from state.json
// when the shim has exited (an error wrapping ErrShimDead if it died before
// recording the stop).
func (c *Client) State(ctx context.Context) (State, error) {
	var st State
	err := c.api.Call(ctx, http.MethodGet, "/state", nil, &st)
	if err == nil {
		return st, nil
	}
	if dst, derr := c.diskState(); derr == nil || errors.Is(derr, ErrShimDead) {
		return dst, derr
	}
	return State{}, err
}

// DialAgent opens a connection to the guest agent: one yamux stream on the
// agent port, held open by the shim. Closing the write side half-closes the
// stream.
func (c *Client) DialAgent(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(c.dir, agentSock))
	if err != nil {
		return nil, fmt.Errorf("dial agent of %s: %w", c.dir, err)
	}
	return conn, nil
}

// Stop stops the machine: the guest agent is asked to shut down within
// grace, then the hypervisor to power the guest off, and the machine is
// killed when grace ends. It returns once the machine has stopped.
func (c *Client) Stop(ctx context.Context, grace time.Duration) error {
	path := "/stop?grace=" + url.QueryEscape(grace.String())
	if err := c.api.Call(ctx, http.MethodPost, path, nil, nil); err != nil {
		if st, derr := c.diskState(); derr == nil && !st.Running() {
			return nil
		}
		return fmt.Errorf("stop machine in %s: %w", c.dir, err)
	}
	_, err := c.Wait(ctx)
	return err
}

// Kill stops the machine at once and returns once it has stopped.
func (c *Client) Kill(ctx context.Context) error {
	if err := c.api.Call(ctx, http.MethodPost, "/kill", nil, nil); err != nil {
		if st, derr := c.diskState(); derr == nil && !st.Running() {
			return nil
		}
		return fmt.Errorf("kill machine in %s: %w", c.dir, err)
	}
	_, err := c.Wait(ctx)
	return err
}

// Wait blocks until the machine has stopped and returns its final state.
func (c *Client) Wait(ctx context.Context) (State, error) {
	for {
		var st State
		err := c.api.Call(ctx, http.MethodGet, "/wait", nil, &st)
		if err == nil {
			return st, nil
		}
		if ctx.Err() != nil {
			return State{}, ctx.Err()
		}
		// The shim may have exited right after the stop, or died.
		st, derr := c.diskState()
		if derr == nil && !st.Running() {
			return st, nil
		}
		if errors.Is(derr, ErrShimDead) {
			return st, derr
		}
		select {
		case <-ctx.Done():
			return State{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RegisterLog lets the guest write the container log called name (under
// LogDir) until it ends it: the shim writes only logs the host registered.
// Call it before the process that logs under name is created. A shim of
// an earlier build, which has no registration and takes every name, is
// not an error.
func (c *Client) RegisterLog(ctx context.Context, name string) error {
	err := c.api.Call(ctx, http.MethodPost, "/logs/"+url.PathEscape(name), nil, nil)
	if unixhttp.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("register log %s of %s: %w", name, c.dir, err)
	}
	return nil
}

// WaitLog blocks until the container log called name is complete on disk:
// the guest ended it (after its process's last output) and the shim has
// written, synced and closed it. It also returns when the log can no longer
// grow because the log port has ended or the machine has stopped (the
// status says which). ctx bounds the wait.
func (c *Client) WaitLog(ctx context.Context, name string) (LogStatus, error) {
	var st LogStatus
	err := c.api.Call(ctx, http.MethodGet, "/logs/"+url.PathEscape(name)+"/complete", nil, &st)
	if err == nil {
		return st, nil
	}
	if ctx.Err() != nil {
		return LogStatus{}, fmt.Errorf("wait for log %s of %s: %w", name, c.dir, ctx.Err())
	}
	// A shim that has exited wrote and closed every log first.
	if dst, derr := c.diskState(); derr == nil && !dst.Running() {
		return LogStatus{Name: name, PortClosed: true}, nil
	}
	return LogStatus{}, fmt.Errorf("wait for log %s of %s: %w", name, c.dir, err)
}

// Delete removes the machine: it kills a running machine, waits for the
// shim to exit, kills a hypervisor left by a dead shim (only when its pid
// and start time are the recorded ones) and removes the directory. Container
// logs in LogDir stay.
func (c *Client) Delete(ctx context.Context) error {
	st, err := readState(c.dir)
	if errors.Is(err, ErrNoState) {
		return c.removeDir()
	}
	if err != nil {
		return fmt.Errorf("delete machine in %s: %w", c.dir, err)
	}
	if st.Running() && isProcess(st.ShimPid, st.ShimStartTime) {
		killCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := c.Kill(killCtx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("delete machine in %s: %w", c.dir, ctx.Err())
		}
	}
	// The shim exits right after recording the stop; one that hangs or
	// never answered is killed.
	if err := waitGone(ctx, st.ShimPid, st.ShimStartTime, 5*time.Second); err != nil {
		return fmt.Errorf("delete machine in %s: %w", c.dir, err)
	}
	if err := killProcess(st.ShimPid, st.ShimStartTime, 5*time.Second); err != nil {
		return fmt.Errorf("delete machine in %s: shim: %w", c.dir, err)
	}
	if st, err = readState(c.dir); err != nil {
		return fmt.Errorf("delete machine in %s: %w", c.dir, err)
	}
	if st.HypervisorPid > 0 && st.HypervisorPid != st.ShimPid {
		if err := killProcess(st.HypervisorPid, st.HypervisorStartTime, 5*time.Second); err != nil {
			return fmt.Errorf("delete machine in %s: leftover hypervisor: %w", c.dir, err)
		}
	}
	return c.removeDir()
}

func (c *Client) removeDir() error {
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove machine directory: %w", err)
	}
	return nil
}

// waitGone waits up to bound for a process to exit; it is not an error if
// it is still there afterwards (the caller decides).
func waitGone(ctx context.Context, pid int, start uint64, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for isProcess(pid, start) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// diskState reads state.json for a shim that does not answer.
func (c *Client) diskState() (State, error) {
	st, err := readState(c.dir)
	if err != nil || !st.Running() {
		return st, err
	}
	if isProcess(st.ShimPid, st.ShimStartTime) {
		return st, fmt.Errorf("shim %d of %s runs but does not answer", st.ShimPid, c.dir)
	}
	// The shim writes the final state before it exits: read once more.
	if st, err = readState(c.dir); err != nil || !st.Running() {
		return st, err
	}
	return st, fmt.Errorf("%w: pid %d exited while the machine was %s", ErrShimDead, st.ShimPid, st.Status)
}

// List returns the machine directories under root (those holding a
// shim.json), sorted, for reconciliation when the node starts. A missing
// root holds none.
func List(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list machines in %s: %w", root, err)
	}
	var dirs []string
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if e.IsDir() && fileExists(filepath.Join(dir, configFile)) {
			dirs = append(dirs, dir)
		}
	}
	sort.Strings(dirs)
	return dirs, nil
}
