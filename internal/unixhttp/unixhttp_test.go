package unixhttp

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func TestCallOverUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /echo", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]int
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		in["n"]++
		_ = json.NewEncoder(w).Encode(in)
	})
	mux.HandleFunc("GET /busy", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "port 80 is taken\n", http.StatusConflict)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	c := New("switch", sock, 1)
	defer c.CloseIdle()
	var out map[string]int
	if err := c.Call(context.Background(), http.MethodPut, "/echo", map[string]int{"n": 41}, &out); err != nil || out["n"] != 42 {
		t.Fatalf("Call = %v, %v; want n=42", out, err)
	}
	err = c.Call(context.Background(), http.MethodGet, "/busy", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "switch GET /busy: 409 Conflict: port 80 is taken") {
		t.Fatalf("error = %v, want the server's status and text", err)
	}
	if IsNotFound(err) {
		t.Fatalf("a 409 counts as not found: %v", err)
	}
	if err := c.Call(context.Background(), http.MethodPost, "/logs/0", nil, nil); !IsNotFound(err) {
		t.Fatalf("error of a path the server lacks = %v, want IsNotFound", err)
	}
	// Nothing listens: the dial error names the call.
	gone := New("shim API", filepath.Join(t.TempDir(), "none.sock"), 1)
	if err := gone.Call(context.Background(), http.MethodGet, "/state", nil, nil); err == nil || !strings.HasPrefix(err.Error(), "shim API GET /state: ") {
		t.Fatalf("error = %v, want one naming the call", err)
	}
}
