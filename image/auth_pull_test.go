package image_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

const (
	regUser = "alice"
	regPass = "s3cret"
)

func authConfig(t *testing.T, host, user, pass string) []byte {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	return []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth))
}

// emptyDockerConfig points DOCKER_CONFIG at an empty directory so the
// machine's own Docker credentials play no part.
func emptyDockerConfig(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
}

func TestPullWithCredentials(t *testing.T) {
	reg := imagetest.StartRegistry(t, imagetest.WithBasicAuth(regUser, regPass))
	ref := reg.Push(t, "private/app:1", imagetest.Busybox(t))
	ctx := context.Background()

	tests := []struct {
		name      string
		dockerCfg []byte // written to $DOCKER_CONFIG/config.json
		opts      image.PullOptions
		wantErr   error
	}{
		{name: "anonymous", wantErr: image.ErrUnauthorized},
		{name: "docker config file", dockerCfg: authConfig(t, reg.Addr, regUser, regPass)},
		{name: "docker config file with wrong password", dockerCfg: authConfig(t, reg.Addr, regUser, "nope"), wantErr: image.ErrUnauthorized},
		{name: "explicit credentials", opts: image.PullOptions{Credentials: &image.Credentials{Username: regUser, Password: regPass}}},
		{name: "wrong explicit credentials", opts: image.PullOptions{Credentials: &image.Credentials{Username: regUser, Password: "nope"}}, wantErr: image.ErrUnauthorized},
		{name: "dockerconfigjson pull secret", opts: image.PullOptions{PullSecrets: []image.PullSecret{{Name: "ns/regcred", DockerConfigJSON: authConfig(t, reg.Addr, regUser, regPass)}}}},
		{name: "dockercfg pull secret", opts: image.PullOptions{PullSecrets: []image.PullSecret{{Name: "ns/legacy",
			DockerCfg: []byte(fmt.Sprintf(`{%q:{"username":%q,"password":%q,"email":"a@example.com"}}`, reg.Addr, regUser, regPass))}}}},
		{name: "pull secret for another registry", opts: image.PullOptions{PullSecrets: []image.PullSecret{{Name: "ns/other", DockerConfigJSON: authConfig(t, "other.example", regUser, regPass)}}}, wantErr: image.ErrUnauthorized},
		{
			name:      "wrong pull secret falls back to the node's docker config",
			dockerCfg: authConfig(t, reg.Addr, regUser, regPass),
			opts:      image.PullOptions{PullSecrets: []image.PullSecret{{Name: "ns/stale", DockerConfigJSON: authConfig(t, reg.Addr, regUser, "old")}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("DOCKER_CONFIG", dir)
			if tt.dockerCfg != nil {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), tt.dockerCfg, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, _ := openStore(t)
			img, err := s.Pull(ctx, ref, tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("want %v, got %v", tt.wantErr, err)
				}
				if !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "UNAUTHORIZED") {
					t.Errorf("registry's error text lost: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Digest != digestOf(t, imagetest.Busybox(t)) {
				t.Errorf("pulled %s", img.Digest)
			}
		})
	}
}

// TestPullWithRegistryToken uses a registry that accepts only a bearer
// token handed out beforehand (Credentials.RegistryToken).
func TestPullWithRegistryToken(t *testing.T) {
	emptyDockerConfig(t)
	const token = "tok-123"
	reg := imagetest.StartRegistry(t, imagetest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Pushes come from imagetest itself, without credentials.
			if r.Method == http.MethodGet && r.Header.Get("Authorization") != "Bearer "+token {
				w.Header().Set("WWW-Authenticate", `Basic realm="token-test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`, http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	ref := reg.Push(t, "tokened:1", imagetest.Busybox(t))
	s, _ := openStore(t)
	ctx := context.Background()
	if _, err := s.Pull(ctx, ref, image.PullOptions{Credentials: &image.Credentials{RegistryToken: "wrong"}}); !errors.Is(err, image.ErrUnauthorized) {
		t.Fatalf("wrong token: want ErrUnauthorized, got %v", err)
	}
	if _, err := s.Pull(ctx, ref, image.PullOptions{Credentials: &image.Credentials{RegistryToken: token}}); err != nil {
		t.Fatalf("registry token: %v", err)
	}
}

// TestPullWithIdentityToken uses a registry with a token service that
// accepts only an OAuth2 refresh token (Credentials.IdentityToken), as
// Docker Hub and ACR do after `docker login` with a token.
func TestPullWithIdentityToken(t *testing.T) {
	emptyDockerConfig(t)
	const refreshToken, accessToken = "refresh-abc", "access-xyz"
	var locked atomic.Bool // open while imagetest pushes
	reg := imagetest.StartRegistry(t, imagetest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !locked.Load() {
				next.ServeHTTP(w, r)
				return
			}
			if r.URL.Path == "/token" {
				if r.Method != http.MethodPost || r.FormValue("grant_type") != "refresh_token" || r.FormValue("refresh_token") != refreshToken {
					http.Error(w, `{"error":"invalid_grant"}`, http.StatusUnauthorized)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"access_token":%q,"expires_in":300}`, accessToken)
				return
			}
			if r.Method == http.MethodGet && r.Header.Get("Authorization") != "Bearer "+accessToken {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="imagetest"`, r.Host))
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`, http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	ref := reg.Push(t, "oauth:1", imagetest.Busybox(t))
	locked.Store(true)
	s, _ := openStore(t)
	ctx := context.Background()
	if _, err := s.Pull(ctx, ref, image.PullOptions{Credentials: &image.Credentials{IdentityToken: "stale"}}); !errors.Is(err, image.ErrUnauthorized) {
		t.Fatalf("wrong identity token: want ErrUnauthorized, got %v", err)
	}
	if _, err := s.Pull(ctx, ref, image.PullOptions{Credentials: &image.Credentials{IdentityToken: refreshToken}}); err != nil {
		t.Fatalf("identity token: %v", err)
	}
}
