package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/vk-applevm/vk-applevm/node"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// resolve parses a node command line and resolves its configuration.
func resolve(t *testing.T, args ...string) (NodeConfig, error) {
	t.Helper()
	g := &globals{}
	var got NodeConfig
	var resolveErr error
	root := newRootCommand(g)
	for _, c := range root.Commands() {
		if c.Name() == "node" {
			c.RunE = func(cmd *cobra.Command, _ []string) error {
				path, _ := cmd.Flags().GetString("config")
				var fl NodeConfig
				// The flag values live in the command's own bindings:
				// read them back through resolveNodeConfig's visitor.
				fl = nodeFlagValues(t, cmd)
				got, resolveErr = resolveNodeConfig(cmd, g, path, &fl)
				return nil
			}
		}
	}
	root.SetArgs(append([]string{"node"}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("node %v: %v", args, err)
	}
	return got, resolveErr
}

// nodeFlagValues reads the parsed node flags into a NodeConfig.
func nodeFlagValues(t *testing.T, cmd *cobra.Command) NodeConfig {
	var c NodeConfig
	fs := cmd.Flags()
	for _, f := range nodeFlags {
		switch p := f.field(&c).(type) {
		case *string:
			*p, _ = fs.GetString(f.name)
		case *bool:
			*p, _ = fs.GetBool(f.name)
		case *int:
			*p, _ = fs.GetInt(f.name)
		case *[]string:
			*p, _ = fs.GetStringArray(f.name)
		case *map[string]string:
			*p, _ = fs.GetStringToString(f.name)
		default:
			t.Fatalf("flag %s: %T", f.name, p)
		}
	}
	return c
}

func TestNodeConfigDefaultsFileAndFlags(t *testing.T) {
	def, err := resolve(t)
	if err != nil {
		t.Fatal(err)
	}
	if def.Taint != node.DefaultTaint || def.MaxPods != 110 || def.Listen != ":10250" || !def.RotateCertificates ||
		!def.ServerTLSBootstrap || def.ReservedMemory != "2Gi" || def.ClusterDomain != "cluster.local" {
		t.Fatalf("defaults: %+v", def)
	}
	path := writeConfig(t, `apiVersion: vk-applevm.io/v1alpha1
kind: NodeConfig
root: /srv/vkav
bootstrapKubeconfig: /etc/vkav/bootstrap.kubeconfig
kubeconfig: /srv/vkav/kubelet.kubeconfig
nodeName: from-file
nodeIP: 192.168.64.1
maxPods: 20
taint: ""
clusterDNS: [10.96.0.10]
registryMirrors: {index.docker.io: "127.0.0.1:5000"}
nodeLabels: {a: b}
rotateCertificates: false
`)
	c, err := resolve(t, "--config", path, "--node-name", "from-flag", "--max-pods=30", "--root", "/flag-root")
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "from-flag" || c.MaxPods != 30 || c.Root != "/flag-root" {
		t.Errorf("flags do not win: %+v", c)
	}
	if c.NodeIP != "192.168.64.1" || c.Taint != "" || c.BootstrapKubeconfig != "/etc/vkav/bootstrap.kubeconfig" ||
		strings.Join(c.ClusterDNS, ",") != "10.96.0.10" || c.RegistryMirrors["index.docker.io"] != "127.0.0.1:5000" ||
		c.NodeLabels["a"] != "b" || c.RotateCertificates {
		t.Errorf("file values lost: %+v", c)
	}
	if c.ReservedCPU != "500m" || c.Listen != ":10250" || !c.ServerTLSBootstrap {
		t.Errorf("defaults of keys the file leaves out lost: %+v", c)
	}
	cfg, opts, err := nodeSettings(c)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "from-flag" || cfg.CertDir != "/flag-root/pki" || cfg.Taint != "" || opts.mirrors["index.docker.io"] != "127.0.0.1:5000" ||
		len(opts.insecure) != 1 || cfg.Labels["a"] != "b" || cfg.RotateCertificates {
		t.Errorf("node settings: %+v %+v", cfg, opts)
	}
}

func TestNodeConfigRefusesUnknownKeysAndVersions(t *testing.T) {
	for text, want := range map[string]string{
		"apiVersion: vk-applevm.io/v1alpha1\nkind: NodeConfig\nnodeNmae: x\n":   `unknown field "nodeNmae"`,
		"apiVersion: vk-applevm.io/v1alpha1\nkind: NodeConfig\nmaxPods: many\n": "maxPods",
		"apiVersion: vk-applevm.io/v2\nkind: NodeConfig\n":                      "want apiVersion vk-applevm.io/v1alpha1",
		"kind: NodeConfig\n": "want apiVersion",
		"apiVersion: vk-applevm.io/v1alpha1\nkind: NodeConfig\nmaxPods: 1\nmaxPods: 2": "maxPods",
	} {
		if _, err := loadNodeConfig(writeConfig(t, text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %q", text, err, want)
		}
	}
}

func TestBootstrapNeedsKubeconfigPath(t *testing.T) {
	t.Setenv("KUBECONFIG", "/home/me/.kube/config")
	c := defaultNodeConfig()
	c.BootstrapKubeconfig = "/b"
	if _, _, err := nodeSettings(c); err == nil {
		t.Fatal("--bootstrap-kubeconfig without --kubeconfig accepted ($KUBECONFIG would have been overwritten)")
	}
	c.BootstrapKubeconfig = ""
	if cfg, _, err := nodeSettings(c); err != nil || cfg.Kubeconfig != "/home/me/.kube/config" {
		t.Fatalf("$KUBECONFIG not used without bootstrapping: %q, %v", cfg.Kubeconfig, err)
	}
}
