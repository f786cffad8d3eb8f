package image

import (
	"errors"
	"net/http"
	"testing"
)

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost:5000": true, "localhost": true, "registry.localhost:80": true,
		"127.0.0.1:5000": true, "127.1.2.3": true, "[::1]:5000": true, "::1": true,
		"10.0.0.1:5000": false, "192.168.1.1": false, "example.com": false, "localhost.example.com": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// recordingTransport stands in for the network in this unit test of the
// policy: it records which inner transport got the request.
type recordingTransport struct{ got *string }

func (r recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	*r.got = req.URL.String()
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: req}, nil
}

func TestRegistryTransportPolicy(t *testing.T) {
	var secure, insecure string
	rt := &registryTransport{
		secure:      recordingTransport{&secure},
		insecureTLS: recordingTransport{&insecure},
		insecure:    map[string]bool{"10.1.0.2:5000": true},
	}
	tests := []struct {
		url         string
		refused     bool
		viaInsecure bool
	}{
		{"http://127.0.0.1:5000/v2/", false, false},
		{"http://localhost:5000/v2/", false, false},
		{"http://[::1]:5000/v2/", false, false},
		{"http://10.1.0.2:5000/v2/", false, true},
		{"https://10.1.0.2:5000/v2/", false, true},
		{"http://10.1.0.3:5000/v2/", true, false}, // RFC 1918, which go-containerregistry would allow
		{"http://192.168.0.1/v2/", true, false},
		{"http://registry.example/v2/", true, false},
		{"https://registry.example/v2/", false, false},
	}
	for _, tt := range tests {
		secure, insecure = "", ""
		req, err := http.NewRequest(http.MethodGet, tt.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = rt.RoundTrip(req)
		if tt.refused {
			if !errors.Is(err, ErrPlainHTTP) || secure != "" || insecure != "" {
				t.Errorf("%s: want refused with ErrPlainHTTP, got err %v, sent %q %q", tt.url, err, secure, insecure)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.url, err)
			continue
		}
		if sent := map[bool]string{false: secure, true: insecure}[tt.viaInsecure]; sent != tt.url {
			t.Errorf("%s: went to the wrong transport (secure %q, insecure %q)", tt.url, secure, insecure)
		}
	}
}
