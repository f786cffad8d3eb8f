package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vk-applevm/vk-applevm/container"
)

// envSettings turns -e and --env-file into KEY=VALUE settings, as docker
// run does: files first, then -e in order; "KEY" alone takes this
// process's value of KEY and is dropped when it has none.
func envSettings(flags, files []string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	add := func(where, kv string) error {
		k, _, hasValue := strings.Cut(kv, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return fmt.Errorf("%s %q: want KEY=VALUE or KEY", where, kv)
		}
		if hasValue {
			out = append(out, kv)
		} else if v, ok := lookup(k); ok {
			out = append(out, k+"="+v)
		}
		return nil
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimLeft(sc.Text(), " \t")
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := add(fmt.Sprintf("--env-file %s line %d:", path, n), line); err != nil {
				return nil, err
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--env-file %s: %w", path, err)
		}
	}
	for _, kv := range flags {
		if err := add("-e", kv); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseVolumes turns -v HOST:CONTAINER[:ro|rw] into directory shares
// (virtio-fs) and -v CONTAINER (an absolute path alone, Docker's anonymous
// volume) into a disk of the container's own: a sparse ext4 image of
// container.DefaultVolumeDiskBytes in its VM's directory, empty at first,
// removed with the container. A disk has what a share on vz lacks: chown
// to any uid (vz's virtio-fs is single-uid, Code-Hex/vz#61). The host
// directory must exist: like Apple's container, and unlike docker,
// nothing is created on the host behind the user's back.
func parseVolumes(specs []string) ([]container.Mount, error) {
	var out []container.Mount
	seen := map[string]bool{}
	for _, spec := range specs {
		m, err := parseVolume(spec)
		if err != nil {
			return nil, err
		}
		if seen[m.Destination] {
			return nil, fmt.Errorf("-v %q: %s is mounted twice", spec, m.Destination)
		}
		seen[m.Destination] = true
		out = append(out, m)
	}
	return out, nil
}

func parseVolume(spec string) (container.Mount, error) {
	parts := strings.Split(spec, ":")
	if len(parts) == 1 {
		dst, err := containerPath(spec, parts[0])
		if err != nil {
			return container.Mount{}, fmt.Errorf("%w (alone it names an anonymous volume; HOST:CONTAINER shares a host directory)", err)
		}
		// No HostPath: the runtime places the image in the VM's directory.
		return container.Mount{Kind: container.MountDisk, Destination: dst, SizeBytes: container.DefaultVolumeDiskBytes}, nil
	}
	ro := false
	if n := len(parts); n == 3 {
		switch parts[2] {
		case "ro":
			ro = true
		case "rw":
		default:
			return container.Mount{}, fmt.Errorf("-v %q: the mode after the second ':' must be ro or rw", spec)
		}
		parts = parts[:2]
	}
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return container.Mount{}, fmt.Errorf("-v %q: want HOST:CONTAINER[:ro] or CONTAINER", spec)
	}
	host, err := filepath.Abs(parts[0])
	if err != nil {
		return container.Mount{}, fmt.Errorf("-v %q: %w", spec, err)
	}
	fi, err := os.Stat(host)
	if err != nil {
		return container.Mount{}, fmt.Errorf("-v %q: %w", spec, err)
	}
	if !fi.IsDir() {
		return container.Mount{}, fmt.Errorf("-v %q: %s is not a directory (only directories are shared with the VM)", spec, host)
	}
	dst, err := containerPath(spec, parts[1])
	if err != nil {
		return container.Mount{}, err
	}
	return container.Mount{Kind: container.MountShare, HostPath: host, Destination: dst, ReadOnly: ro}, nil
}

// containerPath checks a volume's place in the container: absolute, and
// not the root filesystem itself.
func containerPath(spec, p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("-v %q: the container path must be absolute", spec)
	}
	p = filepath.Clean(p)
	if p == "/" {
		return "", fmt.Errorf("-v %q: the container path cannot be /", spec)
	}
	return p, nil
}

// securitySettings turns docker run's --cap-add, --cap-drop, --read-only,
// --security-opt and --sysctl into a container's Security. As with
// docker, the runtime's default seccomp profile applies unless
// --security-opt seccomp=unconfined or seccomp=FILE says otherwise.
func securitySettings(capAdd, capDrop []string, readOnly bool, opts, sysctls []string, readFile func(string) ([]byte, error)) (container.Security, error) {
	s := container.Security{CapAdd: capAdd, CapDrop: capDrop, ReadOnlyRootfs: readOnly, Seccomp: container.SeccompRuntimeDefault}
	for _, o := range opts {
		key, val, hasVal := strings.Cut(o, "=")
		if !hasVal {
			key, val, hasVal = strings.Cut(o, ":")
		}
		switch key {
		case "no-new-privileges":
			nnp := true
			switch {
			case !hasVal:
			case val == "true":
			case val == "false":
				nnp = false
			default:
				return s, fmt.Errorf("--security-opt %q: no-new-privileges takes true or false", o)
			}
			s.NoNewPrivileges = &nnp
		case "seccomp":
			switch {
			case !hasVal || val == "":
				return s, fmt.Errorf("--security-opt %q: want seccomp=unconfined or seccomp=FILE", o)
			case val == "unconfined":
				s.Seccomp = container.SeccompUnconfined
			case val == "builtin" || val == "default":
				s.Seccomp = container.SeccompRuntimeDefault
			default:
				b, err := readFile(val)
				if err != nil {
					return s, fmt.Errorf("--security-opt seccomp: %w", err)
				}
				s.Seccomp, s.SeccompProfile = container.SeccompLocalhost, b
			}
		default:
			return s, fmt.Errorf("--security-opt %q: supported are no-new-privileges and seccomp=unconfined|FILE", o)
		}
	}
	for _, kv := range sysctls {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return s, fmt.Errorf("--sysctl %q: want KEY=VALUE", kv)
		}
		if s.Sysctls == nil {
			s.Sysctls = map[string]string{}
		}
		s.Sysctls[k] = v
	}
	if err := s.Check(); err != nil {
		return s, err
	}
	return s, nil
}
