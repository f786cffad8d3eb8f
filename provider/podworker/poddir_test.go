package podworker

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestSweepPodDirs(t *testing.T) {
	root := t.TempDir()
	pods := filepath.Join(root, "pods")
	for _, d := range []string{
		"ns_kept_uid-1/volumes/kubernetes.io~empty-dir/data",
		"ns_gone_uid-2/c/0.log.d",
		tombstonePrefix + "ns_crashed_uid-3/x",
		"not-a-pod-dir",
	} {
		if err := os.MkdirAll(filepath.Join(pods, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := SweepPodDirs(root, func(uid types.UID) bool { return uid == "uid-1" })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{tombstonePrefix + "ns_crashed_uid-3", "ns_gone_uid-2"}; !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	ents, _ := os.ReadDir(pods)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if want := []string{"not-a-pod-dir", "ns_kept_uid-1"}; !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
}

func TestRemovePodDir(t *testing.T) {
	root := t.TempDir()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u"}}
	dir := filepath.Join(root, "pods", PodDirName(pod), "volumes")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := RemovePodDir(root, pod); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "pods")); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
	if err := RemovePodDir(root, pod); err != nil {
		t.Fatalf("a second removal: %v", err)
	}
}
