package podworker

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// tombstonePrefix marks a pod directory being removed: the rename is
// atomic, so a crash halfway through a RemoveAll leaves a name the next
// sweep finishes, never a half-deleted directory that looks like a pod's.
const tombstonePrefix = ".deleted-"

// RemovePodDir removes a pod's directory under root/pods (emptyDir
// contents, logs, files volumes) once nothing uses it.
func RemovePodDir(root string, pod *corev1.Pod) error {
	return removeDir(filepath.Join(root, "pods"), PodDirName(pod))
}

func removeDir(pods, name string) error {
	tomb := filepath.Join(pods, tombstonePrefix+name)
	if err := os.Rename(filepath.Join(pods, name), tomb); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("remove pod directory %s: %w", name, err)
	}
	if err := os.RemoveAll(tomb); err != nil {
		return fmt.Errorf("remove pod directory %s: %w", name, err)
	}
	return nil
}

// PodDirUID is the pod UID a directory under pods/ belongs to, from the
// name PodDirName gives it (namespace and pod names have no '_').
func PodDirUID(name string) (types.UID, bool) {
	i := strings.LastIndexByte(name, '_')
	if i < 0 || strings.HasPrefix(name, tombstonePrefix) || strings.Count(name, "_") != 2 {
		return "", false
	}
	return types.UID(name[i+1:]), true
}

// SweepPodDirs removes the directories under root/pods of pods keep does
// not know, and the tombstones of removals a crash interrupted. It returns
// what it removed.
func SweepPodDirs(root string, keep func(types.UID) bool) ([]string, error) {
	pods := filepath.Join(root, "pods")
	ents, err := os.ReadDir(pods)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("sweep pod directories: %w", err)
	}
	var removed []string
	var errs []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, tombstonePrefix) {
			if err := os.RemoveAll(filepath.Join(pods, name)); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			removed = append(removed, name)
			continue
		}
		uid, ok := PodDirUID(name)
		if !ok || !e.IsDir() || keep(uid) {
			continue
		}
		if err := removeDir(pods, name); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		removed = append(removed, name)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("sweep pod directories: %s", strings.Join(errs, "; "))
	}
	return removed, nil
}
