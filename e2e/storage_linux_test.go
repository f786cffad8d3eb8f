package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestNodeEmptyDirOnItsOwnDisk: an emptyDir only one container mounts is a
// disk of its own: a non-root entrypoint chowns the file it made (virtio-fs
// under vz cannot), fsGroup owns the volume, and the 8Mi sizeLimit is an
// exact cap: the 9th MiB fails with ENOSPC and the pod keeps running.
func TestNodeEmptyDirOnItsOwnDisk(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("owndisk")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000}
  containers:
  - name: app
    image: BUSYBOX
    command: ["sh", "-c", "echo hi > /data/f && chown 1000:1000 /data/f && echo chown=ok; stat -c 'dir %a %g' /data; stat -c 'file %u:%g' /data/f; dd if=/dev/zero of=/data/big bs=1M count=9 conv=fsync; echo dd=$?; sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, emptyDir: {sizeLimit: 8Mi}}
`, name))
	ne.waitPod(t, name, "Running", 4*time.Minute, podRunning)
	ne.waitLogs(t, name, "chown=ok", "dir 2777 2000", "file 1000:1000", "No space left on device", "dd=1")
	// ENOSPC is the cap; the eviction loop does not also evict the pod.
	time.Sleep(12 * time.Second)
	if p := ne.pod(t, name); p.Status.Phase != corev1.PodRunning {
		t.Fatalf("phase %s after ENOSPC: %s %s", p.Status.Phase, p.Status.Reason, p.Status.Message)
	}
	ne.kubectl(t, "delete", "pod", name, "--wait=true", "--timeout=60s")
}

// TestNodeLocalStorageEviction: the kubelet's local storage eviction, with
// its reason, messages and event: a pod whose container writes past the
// pod's ephemeral-storage limit into an emptyDir without sizeLimit, and a
// pod whose shared emptyDir (two containers) outgrows its sizeLimit.
func TestNodeLocalStorageEviction(t *testing.T) {
	ne := clusterNode(t)
	over := uniqueName("overlimit")
	shared := uniqueName("overshared")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  restartPolicy: Never
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: BUSYBOX
    command: ["sh", "-c", "dd if=/dev/zero of=/scratch/fill bs=1M count=20 conv=fsync; echo filled; sleep 3600"]
    resources: {limits: {ephemeral-storage: 16Mi}}
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes:
  - {name: scratch, emptyDir: {}}
`, over))
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  restartPolicy: Never
  terminationGracePeriodSeconds: 30
  containers:
  - name: writer
    image: BUSYBOX
    command: ["sh", "-c", "dd if=/dev/zero of=/data/fill bs=1M count=10 conv=fsync; echo filled; sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  - name: reader
    image: BUSYBOX
    command: ["sleep", "3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, emptyDir: {sizeLimit: 8Mi}}
`, shared))
	for _, c := range []struct{ pod, message string }{
		{over, "Pod ephemeral local storage usage exceeds the total limit of containers 16Mi. "},
		{shared, `Usage of EmptyDir volume "data" exceeds the limit "8Mi". `},
	} {
		start := time.Now()
		p := ne.waitPod(t, c.pod, "Failed", 5*time.Minute, func(p corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
		if p.Status.Reason != "Evicted" || p.Status.Message != c.message {
			t.Errorf("%s: reason %q message %q, want Evicted %q", c.pod, p.Status.Reason, p.Status.Message, c.message)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Terminated == nil {
				t.Errorf("%s: container %s not terminated: %+v", c.pod, cs.Name, cs.State)
			}
		}
		ev := ne.waitEvents(t, c.pod, "Evicted", "{.items[*].type} {.items[*].message}", func(s string) bool { return strings.TrimSpace(s) != "" })
		if !strings.Contains(ev, "Warning") || !strings.Contains(ev, strings.TrimSpace(c.message)) {
			t.Errorf("%s: Evicted event %q", c.pod, ev)
		}
		t.Logf("%s: %s %q (seen %v after the first one's wait began)", c.pod, p.Status.Reason, p.Status.Message, time.Since(start).Round(time.Second))
	}
	ne.kubectl(t, "delete", "pod", over, shared, "--wait=true", "--timeout=60s")
}
