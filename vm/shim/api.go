package shim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// The control API on shim.sock, HTTP/1.1 with JSON bodies:
//
//	GET  /state              → 200 State
//	POST /stop?grace=<dur>   → 202 State; graceful stop (Go duration syntax)
//	POST /kill               → 202 State
//	GET  /wait               → 200 State once the machine has stopped
//	GET  /logs/{name}/complete → 200 LogStatus once that container log is
//	                           complete on disk, or the log port has ended
//	POST /logs/{name}        → 204; the guest may write that log until it
//	                           ends it (frames for other names are dropped)
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.snapshot())
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		grace := s.cfg.StopGrace
		if v := r.URL.Query().Get("grace"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				http.Error(w, fmt.Sprintf("bad grace period %q", v), http.StatusBadRequest)
				return
			}
			grace = d
		}
		s.request(stopRequest{grace: grace})
		writeJSON(w, http.StatusAccepted, s.snapshot())
	})
	mux.HandleFunc("POST /kill", func(w http.ResponseWriter, r *http.Request) {
		s.request(stopRequest{kill: true})
		writeJSON(w, http.StatusAccepted, s.snapshot())
	})
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-s.final:
			writeJSON(w, http.StatusOK, s.snapshot())
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("POST /logs/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.logNames.register(r.PathValue("name")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /logs/{name}/complete", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := validLogName(name); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		st, err := s.logEnds.wait(r.Context(), name)
		if err != nil {
			return // the client has gone
		}
		writeJSON(w, http.StatusOK, st)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
