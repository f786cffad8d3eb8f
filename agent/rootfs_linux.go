package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// assemble builds the container's root filesystem on its mounted disks:
// a fresh writable layer, the overlay, the system mounts, the /etc files
// and the user's mounts.
func (s *Server) assemble(ctx context.Context, c *container, req *api.CreateContainerRequest) error {
	// Per container id, so containers may share one scratch disk.
	layer := filepath.Join(c.scratch, c.id)
	upper := filepath.Join(layer, "upper")
	work := filepath.Join(layer, "work")
	if err := os.RemoveAll(layer); err != nil {
		return fmt.Errorf("reset writable layer: %w", err)
	}
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create writable layer: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", c.image, upper, work)
	if err := unix.Mount("overlay", c.rootfs, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", c.rootfs, err)
	}
	if err := systemMounts(c.rootfs); err != nil {
		return err
	}
	if err := s.etcMounts(c, req.GetHostname()); err != nil {
		return err
	}
	c.volumes = map[string]string{}
	disks := map[string]string{}
	for _, m := range req.GetMounts() {
		var err error
		if m.GetType() == "disk" {
			err = s.mountVolumeDisk(ctx, c, m, disks)
		} else {
			err = c.userMount(m)
		}
		if err != nil {
			return err
		}
		if err := s.mountOwnership(c, m); err != nil {
			return fmt.Errorf("fsGroup ownership of %s: %w", m.GetDestination(), err)
		}
	}
	return nil
}

const (
	nosuid = unix.MS_NOSUID
	nodev  = unix.MS_NODEV
	noexec = unix.MS_NOEXEC
)

// systemMounts gives the container what runc's default spec gives it,
// except what belongs to the container's own namespaces (/proc, cgroup2,
// mqueue), which its first process mounts (setupNamespaces).
func systemMounts(rootfs string) error {
	type m struct {
		target, fstype, source string
		flags                  uintptr
		data                   string
	}
	for _, x := range []m{
		{"/sys", "sysfs", "sysfs", nosuid | nodev | noexec | unix.MS_RDONLY, ""},
		{"/dev", "tmpfs", "tmpfs", nosuid | unix.MS_STRICTATIME, "mode=755,size=65536k"},
	} {
		if err := mountIn(rootfs, x.target, true, x.source, x.fstype, x.flags, x.data); err != nil {
			return err
		}
	}
	if err := populateDev(rootfs); err != nil {
		return err
	}
	for _, x := range []m{
		// gid 5 is the tty group; ptmxmode lets users allocate terminals.
		{"/dev/pts", "devpts", "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"/dev/shm", "tmpfs", "shm", nosuid | nodev | noexec, "mode=1777,size=65536k"},
	} {
		if err := mountIn(rootfs, x.target, true, x.source, x.fstype, x.flags, x.data); err != nil {
			return err
		}
	}
	return nil
}

// populateDev fills the container's /dev tmpfs with the standard nodes
// (numbers from the kernel's Documentation/admin-guide/devices.txt).
func populateDev(rootfs string) error {
	dev, err := openInRoot(rootfs, "/dev", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("open container /dev: %w", err)
	}
	defer dev.Close()
	fd := int(dev.Fd())
	for _, n := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		if err := unix.Mknodat(fd, n.name, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("create /dev/%s: %w", n.name, err)
		}
		// mknod's mode is filtered by the umask.
		if err := unix.Fchmodat(fd, n.name, 0o666, 0); err != nil {
			return fmt.Errorf("chmod /dev/%s: %w", n.name, err)
		}
	}
	for _, l := range [][2]string{
		{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
		{"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"}, {"core", "/proc/kcore"},
	} {
		if err := unix.Symlinkat(l[1], fd, l[0]); err != nil {
			return fmt.Errorf("create /dev/%s: %w", l[0], err)
		}
	}
	return nil
}

// mountIn mounts onto target inside rootfs, creating it (a directory when
// dir) and resolving it within rootfs.
func mountIn(rootfs, target string, dir bool, source, fstype string, flags uintptr, data string) error {
	f, err := mountTarget(rootfs, target, dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Mount(source, procFDPath(f), fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", source, fstype, target, err)
	}
	return nil
}

// bindIn binds a guest path onto target inside rootfs.
func bindIn(rootfs, source, target string, dir, readOnly bool) error {
	if err := mountIn(rootfs, target, dir, source, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if !readOnly {
		return nil
	}
	// A bind takes the source's flags; read-only needs a remount of the
	// new mount, reached by resolving the target again.
	f, err := openInRoot(rootfs, target, unix.O_PATH, 0)
	if err != nil {
		return fmt.Errorf("reopen %s: %w", target, err)
	}
	defer f.Close()
	if err := unix.Mount("", procFDPath(f), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// etcMounts binds /etc/hosts, /etc/resolv.conf (shared, from Setup) and
// /etc/hostname (the container's own) into the container, as the kubelet
// does. Setup rewrites the shared files in place, so the binds follow.
func (s *Server) etcMounts(c *container, hostname string) error {
	hosts, err := s.etcFile("hosts", renderHosts(nil))
	if err != nil {
		return err
	}
	resolv, err := s.etcFile("resolv.conf", "")
	if err != nil {
		return err
	}
	if hostname == "" {
		s.mu.Lock()
		hostname = s.hostname
		s.mu.Unlock()
	}
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	c.hostname = hostname
	hostnameFile := filepath.Join(c.dir, "hostname")
	if err := os.WriteFile(hostnameFile, []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("write container hostname: %w", err)
	}
	for _, b := range [][2]string{{hosts, "/etc/hosts"}, {resolv, "/etc/resolv.conf"}, {hostnameFile, "/etc/hostname"}} {
		if err := bindIn(c.rootfs, b[0], b[1], false, false); err != nil {
			return err
		}
	}
	return nil
}

// etcFile returns the path of a shared /etc file, creating it with def.
func (s *Server) etcFile(name, def string) (string, error) {
	p := filepath.Join(s.cfg.StateDir, "etc", name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return p, nil
	}
	if err != nil {
		return "", fmt.Errorf("create %s: %w", p, err)
	}
	_, err = f.WriteString(def)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	return p, nil
}

// userMount makes one of the request's mounts.
func (c *container) userMount(m *api.Mount) error {
	dst := m.GetDestination()
	if !path.IsAbs(dst) || path.Clean(dst) != dst || dst == "/" {
		return fmt.Errorf("mount destination %q must be a clean absolute path other than /: %w", dst, ErrInvalidArgument)
	}
	var ro uintptr
	if m.GetReadOnly() {
		ro = unix.MS_RDONLY
	}
	switch m.GetType() {
	case "tmpfs":
		data := "mode=0777"
		if m.GetSizeBytes() > 0 {
			data += fmt.Sprintf(",size=%d", m.GetSizeBytes())
		}
		return mountIn(c.rootfs, dst, true, "tmpfs", "tmpfs", nosuid|nodev|ro, data)
	case "share":
		return mountShare(c.rootfs, dst, m.GetSource(), m.GetReadOnly())
	case "files":
		vol := m.GetVolume()
		if err := checkID("volume", vol); err != nil {
			return err
		}
		if _, dup := c.volumes[vol]; dup {
			return fmt.Errorf("files volume %q mounted twice: %w", vol, ErrInvalidArgument)
		}
		dir := filepath.Join(c.dir, "volumes", vol)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create files volume %q: %w", vol, err)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", nosuid|nodev, "mode=0755"); err != nil {
			return fmt.Errorf("mount files volume %q: %w", vol, err)
		}
		if err := writeFilesVolume(dir, m.GetFiles(), time.Now()); err != nil {
			return fmt.Errorf("fill files volume %q: %w", vol, err)
		}
		c.volumes[vol] = dir
		return bindIn(c.rootfs, dir, dst, true, m.GetReadOnly())
	case "bind":
		src := m.GetSource()
		st, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("bind mount source: %w", err)
		}
		return bindIn(c.rootfs, src, dst, st.IsDir(), m.GetReadOnly())
	}
	return fmt.Errorf("mount on %s: unknown type %q: %w", dst, m.GetType(), ErrInvalidArgument)
}
