package podworker

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DefaultEvictionPeriod is how often a pod's local storage is measured
// against its limits: the kubelet's eviction monitoring interval (10 s).
const DefaultEvictionPeriod = 10 * time.Second

// statsTimeout bounds one VM's stats call in a measurement.
const statsTimeout = 10 * time.Second

// storageLimited tells whether the pod has a local storage limit that
// only measurement enforces: an ephemeral-storage limit on any container,
// or a sizeLimit on an emptyDir shared between containers (one on a disk
// of its own is capped by the disk's size).
func storageLimited(pod *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if _, ok := cs[i].Resources.Limits[corev1.ResourceEphemeralStorage]; ok {
				return true
			}
		}
	}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.EmptyDir != nil && v.EmptyDir.Medium != corev1.StorageMediumMemory &&
			v.EmptyDir.SizeLimit != nil && !emptyDirOnDisk(pod, v) {
			return true
		}
	}
	return false
}

// enforceStorage evicts the pod, as the kubelet's eviction manager does,
// once its measured local storage breaks a limit (evictionMessage).
func (w *Worker) enforceStorage() {
	if !storageLimited(w.Pod()) {
		return
	}
	period := w.cfg.EvictionPeriod
	if period <= 0 {
		period = DefaultEvictionPeriod
	}
	t := w.cfg.Clock.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-w.runCtx.Done():
			return
		case <-t.C():
		}
		pod := w.Pod()
		if msg := evictionMessage(pod, w.measureStorage(w.runCtx, pod)); msg != "" {
			w.evict(msg)
			return
		}
	}
}

// evict stops the pod at once (the kubelet's grace period for a local
// storage eviction is 0) with a Warning event; the pod turns Failed with
// reason Evicted once its containers have stopped.
func (w *Worker) evict(msg string) {
	w.mu.Lock()
	if w.deadlineExceeded || w.terminating {
		w.mu.Unlock()
		return // already stopping, for its own reason
	}
	w.evicted = msg
	// The reason and message go with every status from now on: a pod
	// whose containers do not restart turns Failed by itself as soon as
	// they are killed, and virtual-kubelet pushes nothing after a
	// terminal status. The phase follows once they have stopped (run).
	w.reason, w.message = ReasonEvicted, msg
	w.mu.Unlock()
	w.log.Info("evicting the pod", "message", msg)
	w.event(corev1.EventTypeWarning, ReasonEvicted, msg)
	w.stop(0)
}

// measureStorage measures what the kubelet's stats give its eviction: each
// container's writable layer (the scratch disk's usage, from the agent)
// and logs, and each disk-medium emptyDir: a shared directory walked as
// du does, a volume disk by the blocks its sparse image holds (deleted
// files' blocks come back through discard).
func (w *Worker) measureStorage(ctx context.Context, pod *corev1.Pod) storageUsage {
	u := storageUsage{Containers: map[string]containerUsage{}, Volumes: map[string]uint64{}, Capped: map[string]bool{}}
	for _, c := range w.containers() {
		name := c.rec.Name()
		var cu containerUsage
		measured := false
		if vm := c.currentVM(); vm != nil {
			sctx, cancel := withTimeout(ctx, w.cfg.Clock, statsTimeout)
			st, err := vm.Stats(sctx)
			cancel()
			if err == nil {
				cu.Rootfs, measured = st.ScratchUsedBytes, true
			}
		}
		if n, ok := logBytes(w.LogDir(name)); ok {
			cu.Logs, measured = n, true
		}
		if measured {
			u.Containers[name] = cu
		}
	}
	dir := w.dir()
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.EmptyDir == nil || v.EmptyDir.Medium == corev1.StorageMediumMemory {
			continue
		}
		if emptyDirOnDisk(pod, v) {
			var st syscall.Stat_t
			if err := syscall.Stat(emptyDirDiskPath(dir, v.Name), &st); err == nil {
				u.Volumes[v.Name] = uint64(st.Blocks) * 512
			}
			u.Capped[v.Name] = true
			continue
		}
		if n, err := diskUsage(emptyDirSharePath(dir, v.Name)); err == nil {
			u.Volumes[v.Name] = n
		} else if !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("measure emptyDir usage", "volume", v.Name, "err", err)
		}
	}
	return u
}

// logBytes is the size of a container's log files (every instance's).
func logBytes(dir string) (uint64, bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	var n uint64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += uint64(fi.Size())
		}
	}
	return n, true
}

// diskUsage is the space the files under dir take, as du counts it (the
// kubelet's volume metrics: allocated blocks, each inode once, symlinks
// not followed).
func diskUsage(dir string) (uint64, error) {
	var n uint64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		n += uint64(st.Blocks) * 512
		return nil
	})
	return n, err
}
