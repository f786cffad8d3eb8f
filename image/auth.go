package image

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Credentials are explicit registry credentials for one pull.
type Credentials struct {
	Username string
	Password string
	// IdentityToken is an OAuth2 refresh token exchanged at the registry's
	// token service.
	IdentityToken string
	// RegistryToken is a bearer token sent to the registry as is.
	RegistryToken string
}

func (c Credentials) authenticator() authn.Authenticator {
	return authn.FromConfig(authn.AuthConfig{
		Username:      c.Username,
		Password:      c.Password,
		IdentityToken: c.IdentityToken,
		RegistryToken: c.RegistryToken,
	})
}

// PullSecret is a Kubernetes imagePullSecret's data. Set one of the fields
// from the Secret's data key of the same name.
type PullSecret struct {
	// Name identifies the secret in errors (namespace/name).
	Name string
	// DockerConfigJSON is the ".dockerconfigjson" key of a
	// kubernetes.io/dockerconfigjson secret: {"auths": {"<key>": {...}}}.
	DockerConfigJSON []byte
	// DockerCfg is the ".dockercfg" key of a kubernetes.io/dockercfg secret:
	// the legacy {"<key>": {...}} map.
	DockerCfg []byte
}

// credentialEntry is one registry key of a docker config and its creds.
type credentialEntry struct {
	key  string
	host string // host[:port], Docker Hub aliases folded to index.docker.io
	path string // path prefix the key is restricted to, "" for all
	auth authn.AuthConfig
}

// dockerAuthEntry is a registry's entry in a docker config file.
type dockerAuthEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// parsePullSecret turns a secret into credential entries sorted most
// specific first.
func parsePullSecret(s PullSecret) ([]credentialEntry, error) {
	var auths map[string]dockerAuthEntry
	switch {
	case len(s.DockerConfigJSON) > 0:
		var cfg struct {
			Auths map[string]dockerAuthEntry `json:"auths"`
		}
		if err := json.Unmarshal(s.DockerConfigJSON, &cfg); err != nil {
			return nil, fmt.Errorf("parse pull secret %s (.dockerconfigjson): %w", s.Name, err)
		}
		auths = cfg.Auths
	case len(s.DockerCfg) > 0:
		if err := json.Unmarshal(s.DockerCfg, &auths); err != nil {
			return nil, fmt.Errorf("parse pull secret %s (.dockercfg): %w", s.Name, err)
		}
	default:
		return nil, fmt.Errorf("pull secret %s has neither .dockerconfigjson nor .dockercfg", s.Name)
	}
	entries := make([]credentialEntry, 0, len(auths))
	for key, a := range auths {
		e, err := newCredentialEntry(key, a)
		if err != nil {
			return nil, fmt.Errorf("pull secret %s: %w", s.Name, err)
		}
		entries = append(entries, e)
	}
	sortBySpecificity(entries)
	return entries, nil
}

func newCredentialEntry(key string, a dockerAuthEntry) (credentialEntry, error) {
	cfg := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
	if a.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return credentialEntry{}, fmt.Errorf("decode auth of %q: %w", key, err)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return credentialEntry{}, fmt.Errorf("decode auth of %q: want user:password", key)
		}
		cfg.Username, cfg.Password = user, pass
	}
	// Keys come as "host", "host:port/path" or "https://host/v1/"; parse
	// them as URLs the way the kubelet's credential keyring does.
	u, err := url.Parse(key)
	if err != nil || u.Host == "" {
		u, err = url.Parse("https://" + key)
	}
	if err != nil || u.Host == "" {
		return credentialEntry{}, fmt.Errorf("parse registry key %q", key)
	}
	p := strings.TrimSuffix(u.Path, "/")
	if p == "/v1" || p == "/v2" { // Docker's legacy API suffix, not a repository
		p = ""
	}
	return credentialEntry{key: key, host: canonicalRegistry(u.Host), path: p, auth: cfg}, nil
}

// canonicalRegistry folds Docker Hub's aliases into the name
// go-containerregistry uses.
func canonicalRegistry(host string) string {
	switch host {
	case "docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return name.DefaultRegistry
	}
	return host
}

// sortBySpecificity orders entries as the kubelet's keyring does: longer
// paths and literal hosts before wildcards, so the most specific key wins.
func sortBySpecificity(entries []credentialEntry) {
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if len(a.path) != len(b.path) {
			return len(a.path) > len(b.path)
		}
		aw, bw := strings.Contains(a.host, "*"), strings.Contains(b.host, "*")
		if aw != bw {
			return !aw
		}
		return a.key > b.key
	})
}

// matches reports whether the entry applies to a repository: same port,
// host labels matching as globs ("*.example.com"), path as a prefix.
func (e credentialEntry) matches(repo name.Repository) bool {
	if !hostMatches(e.host, repo.RegistryStr()) {
		return false
	}
	if e.path == "" {
		return true
	}
	target := "/" + repo.RepositoryStr()
	return target == e.path || strings.HasPrefix(target, e.path+"/")
}

// splitHostPort splits host[:port], "[::1]:5000" included.
func splitHostPort(s string) (host, port string) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), ""
}

func hostMatches(pattern, host string) bool {
	pHost, pPort := splitHostPort(pattern)
	hHost, hPort := splitHostPort(host)
	if pPort != hPort {
		return false
	}
	pl, hl := strings.Split(pHost, "."), strings.Split(hHost, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if ok, err := filepath.Match(pl[i], hl[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

// authenticators lists the credentials to try for a pull, in order:
// explicit credentials, matching pull-secret entries (in secret order), the
// store's keychain (the Docker config file). Anonymous when there are none.
// Like the kubelet, a pull tries them in turn until one is not refused.
func (s *Store) authenticators(repo name.Repository, opts PullOptions) ([]authn.Authenticator, error) {
	var out []authn.Authenticator
	if opts.Credentials != nil {
		out = append(out, opts.Credentials.authenticator())
	}
	for _, secret := range opts.PullSecrets {
		entries, err := parsePullSecret(secret)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.matches(repo) {
				out = append(out, authn.FromConfig(e.auth))
			}
		}
	}
	if s.keychain != nil {
		a, err := s.keychain.Resolve(repo)
		if err != nil {
			return nil, fmt.Errorf("resolve credentials for %s: %w", repo, err)
		}
		if a != authn.Anonymous {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = append(out, authn.Anonymous)
	}
	return out, nil
}
