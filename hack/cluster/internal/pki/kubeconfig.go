package pki

import (
	"encoding/base64"
	"fmt"
	"os"
)

// WriteKubeconfig writes a kubeconfig for server that authenticates with the
// client pair clientBase (see Crt/Key) and trusts the CA caBase. The data is
// embedded rather than referenced so the file still works when copied away
// from the cluster directory. It is written by hand (not with client-go's
// clientcmd) to keep this tool's own dependencies to the standard library.
func WriteKubeconfig(path, server, user, caBase, clientBase string) error {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("writing kubeconfig %s: %w", path, err)
		}
		return base64.StdEncoding.EncodeToString(b), nil
	}
	ca, err := read(Crt(caBase))
	if err != nil {
		return err
	}
	crt, err := read(Crt(clientBase))
	if err != nil {
		return err
	}
	key, err := read(Key(clientBase))
	if err != nil {
		return err
	}
	const tmpl = `apiVersion: v1
kind: Config
clusters:
- name: vk-applevm
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: vk-applevm
  context:
    cluster: vk-applevm
    user: %s
current-context: vk-applevm
`
	// Quote the user name: system:node:x contains colons.
	q := fmt.Sprintf("%q", user)
	data := fmt.Sprintf(tmpl, server, ca, q, crt, key, q)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// WriteTokenKubeconfig writes a kubeconfig for server that authenticates
// with a bearer token (a bootstrap token) and trusts the CA caBase.
func WriteTokenKubeconfig(path, server, user, caBase, token string) error {
	b, err := os.ReadFile(Crt(caBase))
	if err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	const tmpl = `apiVersion: v1
kind: Config
clusters:
- name: vk-applevm
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: vk-applevm
  context:
    cluster: vk-applevm
    user: %s
current-context: vk-applevm
`
	data := fmt.Sprintf(tmpl, server, base64.StdEncoding.EncodeToString(b), user, token, user)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}
