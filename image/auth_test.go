package image

import (
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParsePullSecretFormats(t *testing.T) {
	tests := []struct {
		name   string
		secret PullSecret
		want   map[string]authn.AuthConfig // key → creds
	}{{
		name:   "dockerconfigjson with auth field",
		secret: PullSecret{DockerConfigJSON: []byte(fmt.Sprintf(`{"auths":{"reg.example:5000":{"auth":%q}}}`, b64("alice:pa:ss")))},
		want:   map[string]authn.AuthConfig{"reg.example:5000": {Username: "alice", Password: "pa:ss"}},
	}, {
		name:   "dockerconfigjson with username, password and tokens",
		secret: PullSecret{DockerConfigJSON: []byte(`{"auths":{"https://index.docker.io/v1/":{"username":"bob","password":"pw"},"q.io":{"identitytoken":"idt","registrytoken":"rt"}}}`)},
		want: map[string]authn.AuthConfig{
			"https://index.docker.io/v1/": {Username: "bob", Password: "pw"},
			"q.io":                        {IdentityToken: "idt", RegistryToken: "rt"},
		},
	}, {
		name:   "legacy dockercfg",
		secret: PullSecret{DockerCfg: []byte(fmt.Sprintf(`{"reg.example":{"auth":%q,"email":"c@example.com"}}`, b64("carol:pw")))},
		want:   map[string]authn.AuthConfig{"reg.example": {Username: "carol", Password: "pw"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, err := parsePullSecret(tt.secret)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != len(tt.want) {
				t.Fatalf("got %d entries, want %d", len(entries), len(tt.want))
			}
			for _, e := range entries {
				if e.auth != tt.want[e.key] {
					t.Errorf("%s: got %+v, want %+v", e.key, e.auth, tt.want[e.key])
				}
			}
		})
	}
}

func TestParsePullSecretErrors(t *testing.T) {
	for _, s := range []PullSecret{
		{Name: "empty"},
		{Name: "not json", DockerConfigJSON: []byte("{")},
		{Name: "bad base64", DockerCfg: []byte(`{"r":{"auth":"!!"}}`)},
		{Name: "no colon", DockerCfg: []byte(fmt.Sprintf(`{"r":{"auth":%q}}`, b64("nocolon")))},
	} {
		if _, err := parsePullSecret(s); err == nil {
			t.Errorf("%s: want an error", s.Name)
		}
	}
}

func TestCredentialMatching(t *testing.T) {
	tests := []struct {
		key, image string
		want       bool
	}{
		{"reg.example:5000", "reg.example:5000/app", true},
		{"reg.example:5000", "reg.example/app", false},            // port must match
		{"reg.example", "reg.example:5000/app", false},            // and its absence too (kubelet)
		{"https://reg.example/v1/", "reg.example/team/app", true}, // legacy suffix is not a path
		{"reg.example/team", "reg.example/team/app", true},
		{"reg.example/team", "reg.example/teamster/app", false},
		{"reg.example/team", "reg.example/other/app", false},
		{"*.example", "reg.example/app", true},
		{"*.example", "a.reg.example/app", false}, // globs match one label
		{"docker.io", "busybox", true},
		{"https://index.docker.io/v1/", "library/busybox", true},
		{"registry-1.docker.io", "someone/app", true},
		{"127.0.0.1:5000", "127.0.0.1:5000/x", true},
		{"[::1]:5000", "[::1]:5000/x", true},
	}
	for _, tt := range tests {
		e, err := newCredentialEntry(tt.key, dockerAuthEntry{Username: "u", Password: "p"})
		if err != nil {
			t.Fatalf("%s: %v", tt.key, err)
		}
		ref, err := name.ParseReference(tt.image)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.matches(ref.Context()); got != tt.want {
			t.Errorf("key %q, image %q: matches = %v, want %v", tt.key, tt.image, got, tt.want)
		}
	}
}

func TestCredentialSpecificity(t *testing.T) {
	secret := PullSecret{DockerConfigJSON: []byte(`{"auths":{
		"*.example":{"username":"wild","password":"p"},
		"reg.example":{"username":"host","password":"p"},
		"reg.example/team":{"username":"team","password":"p"},
		"reg.example/team/app":{"username":"app","password":"p"}}}`)}
	entries, err := parsePullSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, e := range entries {
		order = append(order, e.auth.Username)
	}
	if fmt.Sprint(order) != "[app team host wild]" {
		t.Errorf("order %v, want most specific first", order)
	}
}

func TestAuthenticatorOrder(t *testing.T) {
	s := &Store{keychain: nil}
	ref, _ := name.ParseReference("reg.example/app")
	secret := PullSecret{DockerConfigJSON: []byte(`{"auths":{"reg.example":{"username":"fromsecret","password":"p"},"other.example":{"username":"x","password":"p"}}}`)}
	auths, err := s.authenticators(ref.Context(), PullOptions{Credentials: &Credentials{Username: "explicit", Password: "p"}, PullSecrets: []PullSecret{secret}})
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, a := range auths {
		cfg, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, cfg.Username)
	}
	if fmt.Sprint(users) != "[explicit fromsecret]" {
		t.Errorf("authenticators %v, want [explicit fromsecret]", users)
	}
	auths, err = s.authenticators(ref.Context(), PullOptions{})
	if err != nil || len(auths) != 1 || auths[0] != authn.Anonymous {
		t.Errorf("no credentials: got %v, %v; want anonymous", auths, err)
	}
}
