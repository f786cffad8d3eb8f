// Package unixhttp is the JSON-over-HTTP client the node, the CLI and the
// shims use to talk to the local daemons they start (the switch, a VM's
// shim), each serving on a Unix socket in its own directory.
package unixhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// Client calls the server on one Unix socket.
type Client struct {
	// name is the server in error messages ("switch", "shim API").
	name string
	http *http.Client
}

// New returns a client of the server listening on sock; the socket may not
// exist yet (each call dials). maxIdle bounds the kept-alive connections.
func New(name, sock string, maxIdle int) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns: maxIdle,
	}
	return &Client{name: name, http: &http.Client{Transport: tr}}
}

// CloseIdle releases the kept-alive connections.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// StatusError is a server's answer outside 2xx.
type StatusError struct {
	Code   int
	Status string // "404 Not Found"
	Text   string // the body, trimmed
}

func (e *StatusError) Error() string { return e.Status + ": " + e.Text }

// IsNotFound tells a path the server does not serve (404): an older
// daemon, from before the path was added.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// Call sends in (if not nil) as JSON and decodes the answer into out (if
// not nil). A status outside 2xx is an error carrying the server's text.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s %s: encode: %w", c.name, method, path, err)
		}
		body = bytes.NewReader(b)
	}
	// The host part is never resolved: the transport dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, body)
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", c.name, method, path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", c.name, method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s %s: %w", c.name, method, path,
			&StatusError{Code: resp.StatusCode, Status: resp.Status, Text: strings.TrimSpace(string(msg))})
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s %s: decode: %w", c.name, method, path, err)
	}
	return nil
}
