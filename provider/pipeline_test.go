package provider

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider/podworker"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The way a container spec takes to its VM, checked at the VM end.

func TestSpecReachesTheVM(t *testing.T) {
	h := newHarness(t)
	h.objects.setConfigMap("ns", "cfg", &corev1.ConfigMap{Data: map[string]string{"LEVEL": "debug", "file.conf": "x=1"}})
	c := ctr("app", "run")
	c.Env = []corev1.EnvVar{
		{Name: "MY_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "URL", Value: "http://$(MY_IP):8080"},
	}
	c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}
	c.Args = []string{"--listen=$(MY_IP)"}
	c.Command = []string{"run"}
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("2Gi")}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/etc/app"}, {Name: "data", MountPath: "/data"}}
	pod := testPod("spec", c)
	pod.Spec.Hostname = "web-0"
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	h.create(pod)
	p := h.waitFor("spec", "running", running)
	vm := h.rt.vm("uid--spec", "app")
	cfg := vm.cfg
	if cfg.CPUs != 2 || cfg.MemoryBytes != 1<<30 || !cfg.LimitMemory || cfg.ScratchBytes != 2<<30 || cfg.Hostname != "web-0" ||
		cfg.Labels[podworker.LabelPodUID] != "uid--spec" || cfg.Name != "ns/spec/app" || !strings.HasSuffix(cfg.LogDir, "ns_spec_uid--spec/app") {
		t.Fatalf("VM config %+v", cfg)
	}
	if len(cfg.Mounts) != 2 || cfg.Mounts[0].Kind != container.MountFiles || string(cfg.Mounts[0].Files[1].Content) != "x=1" ||
		cfg.Mounts[1].Kind != container.MountDisk || !strings.HasSuffix(cfg.Mounts[1].HostPath, "volumes/vk-applevm.io~empty-dir-disk/data.ext4") {
		t.Fatalf("mounts %+v", cfg.Mounts)
	}
	// Other local users cannot traverse the pod's directory to what a
	// container left in its emptyDir.
	if st, err := os.Stat(filepath.Dir(cfg.LogDir)); err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("pod directory: %v %v, want mode 0750", st, err)
	}
	vm.mu.Lock()
	main := vm.procs["main-0"]
	vm.mu.Unlock()
	ip := p.Status.PodIP
	if strings.Join(main.args, " ") != "run --listen="+ip {
		t.Fatalf("args %q: the pod IP must be bound into $(MY_IP)", main.args)
	}
	// Exec gets the main process's environment, the one the VM ran.
	env := strings.Join(h.mainEnv(t, "spec", "app"), " ")
	for _, want := range []string{"LEVEL=debug", "MY_IP=" + ip, "URL=http://" + ip + ":8080"} {
		if !strings.Contains(env, want) {
			t.Errorf("env %q lacks %q", env, want)
		}
	}
	if strings.Contains(env, "\x00") {
		t.Fatal("a placeholder reached the VM")
	}
}

// mainEnv is the environment of a container's main process, as exec uses it.
func (h *harness) mainEnv(t *testing.T, pod, ctr string) []string {
	t.Helper()
	w, err := h.p.worker("ns", pod)
	if err != nil {
		t.Fatal(err)
	}
	return w.ExecConfig(ctr, []string{"true"}).Env
}

func TestFilesVolumesFollowTheirObjects(t *testing.T) {
	h := newHarness(t)
	h.objects.setSecret("ns", "creds", &corev1.Secret{Data: map[string][]byte{"password": []byte("one")}})
	c := ctr("app", "run")
	c.VolumeMounts = []corev1.VolumeMount{{Name: "creds", MountPath: "/creds"}, {Name: "info", MountPath: "/info"}}
	pod := testPod("vols", c)
	pod.Labels = map[string]string{"tier": "a"}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
		{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}},
	}
	h.create(pod)
	h.waitFor("vols", "running", running)
	vm := h.rt.vm("uid--vols", "app")
	h.objects.setSecret("ns", "creds", &corev1.Secret{Data: map[string][]byte{"password": []byte("two")}})
	guard := time.Now().Add(waitTimeout)
	for content(vm.volume("creds")) != "two" {
		if time.Now().After(guard) {
			t.Fatal("the secret's change never reached the VM")
		}
		h.clock.Step(time.Minute) // the volume sync period
		time.Sleep(time.Millisecond)
	}
	// A label change is pushed at once (UpdatePod kicks the sync).
	newer := pod.DeepCopy()
	newer.Labels["tier"] = "b"
	if err := h.p.UpdatePod(context.Background(), newer); err != nil {
		t.Fatal(err)
	}
	h.eventually("the new label in the VM", func() bool { return content(vm.volume("info")) == `tier="b"` })
	if p, _ := h.p.GetPod(context.Background(), "ns", "vols"); p.Labels["tier"] != "b" {
		t.Fatal("GetPod shows the old labels")
	}
}

func content(files []container.File) string {
	if len(files) == 0 {
		return ""
	}
	return string(files[0].Content)
}

func TestRestartRewritesVolumesIntoTheResetVM(t *testing.T) {
	h := newHarness(t)
	h.objects.setConfigMap("ns", "cfg", &corev1.ConfigMap{Data: map[string]string{"k": "v1"}})
	c := ctr("app", "exit", "1")
	c.VolumeMounts = []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg"}}
	pod := testPod("reset", c)
	pod.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}
	h.create(pod)
	h.waitFor("reset", "backing off", waiting(podworker.ReasonCrashLoopBackOff))
	h.stepUntil("reset", "restarted", time.Second, func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].RestartCount >= 1 })
	vm := h.rt.vm("uid--reset", "app")
	h.eventually("the volume written again after the reset", func() bool { return content(vm.volume("cfg")) == "v1" })
}
