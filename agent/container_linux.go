package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// container is one container's guest-side state. Its directory
// (<StateDir>/containers/<id>) holds:
//
//	image/    the read-only image disk (ext4)
//	scratch/  the writable disk: <id>/upper and <id>/work of the overlay
//	rootfs/   the overlay, with the container's mounts inside
//	volumes/  one tmpfs per files volume, bound into rootfs
//	hostname  the container's /etc/hostname
type container struct {
	id      string
	dir     string
	rootfs  string
	image   string
	scratch string
	cgroup  *cgroup // nil without cgroups
	volumes map[string]string
	// sec and hostname are set by CreateContainer; the starter uses them.
	sec      *containerSecurity
	hostname string

	// startMu serialises process starts; first is the process whose
	// namespaces the others join (guarded by startMu).
	startMu sync.Mutex
	first   *process

	// procs is guarded by Server.mu.
	procs map[string]*process
}

// CreateContainer assembles the root filesystem and mounts; see the proto.
func (s *Server) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	id := req.GetContainerId()
	if err := checkID("container", id); err != nil {
		return nil, err
	}
	if req.GetRootfsDisk() == "" || req.GetScratchDisk() == "" {
		return nil, fmt.Errorf("create container %s: rootfs and scratch disk serials are required: %w", id, ErrInvalidArgument)
	}
	if s.shuttingDown.Load() {
		return nil, fmt.Errorf("create container %s: agent is shutting down: %w", id, ErrFailedPrecondition)
	}
	// Disks, overlay and virtio-fs may need modules still loading.
	if err := s.waitModules(ctx, "create container "+id, containerModules(req)...); err != nil {
		return nil, err
	}
	sec, err := s.resolveSecurity(req.GetSecurity())
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()

	s.mu.Lock()
	c := s.containers[id]
	if c != nil {
		for _, p := range c.procs {
			if p.isRunning() {
				s.mu.Unlock()
				return nil, fmt.Errorf("create container %s: process %s is still running: %w", id, p.id, ErrFailedPrecondition)
			}
		}
		c.procs = map[string]*process{}
	}
	s.mu.Unlock()

	fresh := c == nil
	if fresh {
		var err error
		if c, err = s.newContainer(ctx, id, req); err != nil {
			return nil, err
		}
	} else {
		// A restart: leftovers (daemonized children) go, then the writable
		// layer; the limits may have changed.
		if c.cgroup != nil {
			if err := c.cgroup.signal(sigKill); err != nil {
				s.log.Warn("kill leftover container processes", "container", id, "err", err)
			}
			if _, err := createCgroup(s.cfg.CgroupRoot, id, req.GetMemoryLimitBytes(), req.GetCpuMillis()); err != nil {
				return nil, fmt.Errorf("recreate container %s: %w", id, err)
			}
		}
		if err := unmountUnder(c.rootfs); err != nil {
			return nil, fmt.Errorf("recreate container %s: %w", id, err)
		}
		if err := unmountUnder(filepath.Join(c.dir, "volumes")); err != nil {
			return nil, fmt.Errorf("recreate container %s: %w", id, err)
		}
	}
	c.startMu.Lock()
	c.sec, c.first = sec, nil
	c.startMu.Unlock()
	if err := s.assemble(ctx, c, req); err != nil {
		if fresh {
			_ = c.destroy()
		} else {
			_ = unmountUnder(c.rootfs)
			_ = unmountUnder(filepath.Join(c.dir, "volumes"))
		}
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	s.mu.Lock()
	s.containers[id] = c
	s.mu.Unlock()
	s.log.Info("container created", "container", id)
	return &api.CreateContainerResponse{}, nil
}

// containerModules names the kernel modules a container needs: its disks
// and overlay, and virtio-fs when it mounts shares.
func containerModules(req *api.CreateContainerRequest) []string {
	names := []string{"virtio_blk", "overlay"}
	for _, m := range req.GetMounts() {
		if m.GetType() == "share" {
			return append(names, "fuse", "virtiofs")
		}
	}
	return names
}

// newContainer mounts the container's disks and makes its cgroup.
func (s *Server) newContainer(ctx context.Context, id string, req *api.CreateContainerRequest) (*container, error) {
	dir := filepath.Join(s.cfg.StateDir, "containers", id)
	c := &container{
		id:      id,
		dir:     dir,
		rootfs:  filepath.Join(dir, "rootfs"),
		image:   filepath.Join(dir, "image"),
		scratch: filepath.Join(dir, "scratch"),
		procs:   map[string]*process{},
	}
	for _, d := range []string{c.rootfs, c.image, c.scratch, filepath.Join(dir, "volumes")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create container %s: %w", id, err)
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, s.cfg.DiskWait)
	defer cancel()
	imageDev, err := findDiskBySerial(waitCtx, s.cfg.SysBlockDir, s.cfg.DevDir, req.GetRootfsDisk())
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	scratchDev, err := findDiskBySerial(waitCtx, s.cfg.SysBlockDir, s.cfg.DevDir, req.GetScratchDisk())
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", id, err)
	}
	if err := mountDisk(imageDev, c.image, true); err != nil {
		return nil, fmt.Errorf("create container %s: image disk: %w", id, err)
	}
	if err := mountDisk(scratchDev, c.scratch, false); err != nil {
		_ = unmountUnder(c.image)
		return nil, fmt.Errorf("create container %s: scratch disk: %w", id, err)
	}
	if !s.cfg.NoCgroups {
		cg, err := createCgroup(s.cfg.CgroupRoot, id, req.GetMemoryLimitBytes(), req.GetCpuMillis())
		if err != nil {
			_ = unmountUnder(c.scratch)
			_ = unmountUnder(c.image)
			return nil, fmt.Errorf("create container %s: %w", id, err)
		}
		c.cgroup = cg
		if err := cg.limitDevices(); errors.Is(err, errNoDeviceFilter) {
			// Containers still run; that root ones can open device
			// nodes they make is said loudly.
			s.log.Error("device nodes are not restricted in containers", "container", id, "err", err)
		} else if err != nil {
			_ = cg.remove()
			_ = unmountUnder(c.scratch)
			_ = unmountUnder(c.image)
			return nil, fmt.Errorf("create container %s: %w", id, err)
		}
	} else if req.GetMemoryLimitBytes() > 0 || req.GetCpuMillis() > 0 {
		_ = unmountUnder(c.scratch)
		_ = unmountUnder(c.image)
		return nil, fmt.Errorf("create container %s: limits need cgroups: %w", id, ErrControllerUnavailable)
	}
	return c, nil
}

// destroy unmounts everything of the container and removes its cgroup;
// its processes must be gone.
func (c *container) destroy() error {
	var errs []error
	errs = append(errs, unmountUnder(c.dir))
	if c.cgroup != nil {
		_ = c.cgroup.signal(sigKill)
		// The kernel empties a killed cgroup asynchronously.
		deadline := time.Now().Add(2 * time.Second)
		for {
			err := c.cgroup.remove()
			if err == nil || time.Now().After(deadline) {
				errs = append(errs, err)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// WriteFiles replaces a files volume's content atomically.
func (s *Server) WriteFiles(ctx context.Context, req *api.WriteFilesRequest) (*api.WriteFilesResponse, error) {
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	dir, ok := c.volumes[req.GetVolume()]
	if !ok {
		return nil, fmt.Errorf("write files: volume %q of container %s: %w", req.GetVolume(), c.id, ErrNotFound)
	}
	if err := writeFilesVolume(dir, req.GetFiles(), time.Now()); err != nil {
		return nil, fmt.Errorf("write files to volume %q of container %s: %w", req.GetVolume(), c.id, err)
	}
	if err := s.volumeOwnership(c, dir, true, false); err != nil {
		return nil, fmt.Errorf("fsGroup ownership of volume %q of container %s: %w", req.GetVolume(), c.id, err)
	}
	return &api.WriteFilesResponse{}, nil
}
