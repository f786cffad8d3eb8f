package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/container/vmtemplate"
	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/image"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
)

// labelCLI marks VMs the CLI made (the node leaves them alone).
const labelCLI = "vk-applevm.io/cli"

// mainProcess is the id of a CLI container's process and its log name.
const mainProcess = "main"

// openImages opens the image store under the state root.
func (g *globals) openImages(extra ...image.Option) (*image.Store, error) {
	opts := append([]image.Option{image.WithLogger(g.log)}, extra...)
	return image.Open(g.root, opts...)
}

// cliEnv is what the container commands share.
type cliEnv struct {
	rt     *container.Runtime
	images *image.Store
	net    *switchnet.Network
}

func (e *cliEnv) close(ctx context.Context) {
	if e.net != nil {
		_ = e.net.Close(ctx)
	}
}

// openRuntime opens images, the VM network and the guest bundle.
// hostLoopback, when set, is the node's policy for the switch (see
// switchnet.Config.EnforceHostLoopback); the CLI passes nil.
func (g *globals) openRuntime(ctx context.Context, insecure []string, hostLoopback *bool) (*cliEnv, error) {
	b, err := guest.Find(g.guestDir)
	if err != nil {
		return nil, fmt.Errorf("%w (looked in %s; set --guest or VKAV_GUEST_DIR)", err, g.guestDir)
	}
	var opts []image.Option
	if len(insecure) > 0 {
		opts = append(opts, image.WithInsecureRegistries(insecure...))
	}
	images, err := g.openImages(opts...)
	if err != nil {
		return nil, err
	}
	n, err := g.openNetwork(ctx, hostLoopback)
	if err != nil {
		return nil, err
	}
	var templates *vmtemplate.Store
	if g.templates {
		if templates, err = g.templateStore(ctx); err != nil {
			_ = n.Close(ctx)
			return nil, err
		}
	}
	rt, err := container.New(container.Config{
		Root: g.root, Images: images, Network: n, Guest: b, Driver: defaultDriver, Rosetta: g.rosettaCheck(), Logger: g.log,
		Templates: templates,
	})
	if err != nil {
		_ = n.Close(ctx)
		return nil, err
	}
	return &cliEnv{rt: rt, images: images, net: n}, nil
}

// openNetwork opens the pod network of the state root, starting its switch
// process (this binary's `switch` command) if none runs.
func (g *globals) openNetwork(ctx context.Context, hostLoopback *bool) (*switchnet.Network, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this binary to start the switch: %w", err)
	}
	dir := switchnet.SwitchDir(g.root)
	n, err := switchnet.Open(ctx, switchnet.Config{
		StateDir: g.root, Log: g.log,
		SwitchCommand:     []string{exe, "switch", "--dir", dir},
		AllowHostLoopback: hostLoopback != nil && *hostLoopback, EnforceHostLoopback: hostLoopback != nil,
	})
	if err != nil {
		return nil, fmt.Errorf("set up the pod network: %w", err)
	}
	return n, nil
}

// findSandbox resolves a container name or (a prefix of) an id.
func (e *cliEnv) findSandbox(ctx context.Context, nameOrID string) (*container.VM, error) {
	all, err := e.rt.List(ctx)
	if err != nil {
		return nil, err
	}
	var byPrefix []*container.VM
	for _, sb := range all {
		if sb.Name() == nameOrID || sb.ID() == nameOrID {
			return sb, nil
		}
		if strings.HasPrefix(sb.ID(), nameOrID) {
			byPrefix = append(byPrefix, sb)
		}
	}
	switch len(byPrefix) {
	case 1:
		return byPrefix[0], nil
	case 0:
		return nil, fmt.Errorf("no container %q: %w", nameOrID, container.ErrNotFound)
	}
	return nil, fmt.Errorf("%q matches %d containers; give more of the id", nameOrID, len(byPrefix))
}

// logDir is where a CLI container's output is kept.
func (g *globals) logDir(id string) string { return filepath.Join(g.root, "containers", id) }

// internal wraps an error of vk-applevm itself (exit 125).
func internal(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitInternal, err: err}
}
