package podworker

import (
	"reflect"
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/container"
	"github.com/vk-applevm/vk-applevm/provider/env"
	"github.com/vk-applevm/vk-applevm/provider/vmruntime"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestVMSizeFor(t *testing.T) {
	s := Sizing{DefaultMemory: 512 << 20, MaxCPUs: 4}
	res := func(kv ...string) corev1.ResourceList {
		l := corev1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
		}
		return l
	}
	for _, tc := range []struct {
		name string
		r    corev1.ResourceRequirements
		want VMSize
	}{
		{"nothing", corev1.ResourceRequirements{}, VMSize{CPUs: 1, MemoryBytes: 512 << 20}},
		{"limits", corev1.ResourceRequirements{Limits: res("cpu", "1500m", "memory", "1Gi")}, VMSize{CPUs: 2, MemoryBytes: 1 << 30, LimitMemory: true, CPUMillis: 1500}},
		{"requests", corev1.ResourceRequirements{Requests: res("cpu", "250m", "memory", "256Mi")}, VMSize{CPUs: 1, MemoryBytes: 256 << 20, MemoryRequestBytes: 256 << 20}},
		{"capped at the host", corev1.ResourceRequirements{Limits: res("cpu", "16")}, VMSize{CPUs: 4, MemoryBytes: 512 << 20, CPUMillis: 16000}},
	} {
		if got := s.VMSizeFor(&corev1.Container{Resources: tc.r}); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestProcessArgs(t *testing.T) {
	img := vmruntime.ImageInfo{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	vars := []string{"NAME=world"}
	for _, tc := range []struct {
		name       string
		cmd, args  []string
		img        vmruntime.ImageInfo
		want       []string
		configFail bool
	}{
		{"image defaults", nil, nil, img, []string{"/entry", "default"}, false},
		{"args replace cmd", nil, []string{"hi $(NAME)"}, img, []string{"/entry", "hi world"}, false},
		{"command replaces both", []string{"sh", "-c"}, []string{"echo $(NAME) $$(NAME)"}, img, []string{"sh", "-c", "echo world $(NAME)"}, false},
		{"nothing to run", nil, nil, vmruntime.ImageInfo{}, nil, true},
	} {
		got, err := processArgs(&corev1.Container{Command: tc.cmd, Args: tc.args}, tc.img, vars)
		if tc.configFail {
			if !env.IsConfigError(err) {
				t.Errorf("%s: err %v, want a configuration error", tc.name, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q %v, want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestProcessUser(t *testing.T) {
	u := func(v int64) *int64 { return &v }
	yes := true
	for _, tc := range []struct {
		name    string
		pod     *corev1.PodSecurityContext
		ctr     *corev1.SecurityContext
		imgUser string
		wantUID *uint32
		user    string
		fail    string
	}{
		{"image user", nil, nil, "nobody", nil, "nobody", ""},
		{"pod runAsUser", &corev1.PodSecurityContext{RunAsUser: u(1000)}, nil, "nobody", ptr(uint32(1000)), "", ""},
		{"container wins", &corev1.PodSecurityContext{RunAsUser: u(1000)}, &corev1.SecurityContext{RunAsUser: u(2000)}, "", ptr(uint32(2000)), "", ""},
		{"non-root with uid 0", nil, &corev1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: u(0)}, "", nil, "", "runAsUser 0"},
		{"non-root image root", &corev1.PodSecurityContext{RunAsNonRoot: &yes}, nil, "root", nil, "", "image will run as root"},
		{"non-root image by name", &corev1.PodSecurityContext{RunAsNonRoot: &yes}, nil, "app", nil, "", "non-numeric user"},
		{"non-root image uid", &corev1.PodSecurityContext{RunAsNonRoot: &yes}, nil, "1000:1000", nil, "1000:1000", ""},
	} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: tc.pod}}
		p, err := processUser(pod, &corev1.Container{SecurityContext: tc.ctr}, vmruntime.ImageInfo{User: tc.imgUser})
		if tc.fail != "" {
			if err == nil || !strings.Contains(err.Error(), tc.fail) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.fail)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(p.UID, tc.wantUID) || p.User != tc.user {
			t.Errorf("%s: uid %v user %q err %v", tc.name, p.UID, p.User, err)
		}
	}
	pod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsGroup: u(5), SupplementalGroups: []int64{7, 8}}}}
	p, _ := processUser(pod, &corev1.Container{}, vmruntime.ImageInfo{})
	if *p.GID != 5 || !reflect.DeepEqual(p.AdditionalGIDs, []uint32{7, 8}) {
		t.Fatalf("groups: %+v", p)
	}
}

func ptr[T any](v T) *T { return &v }

func TestMountsFor(t *testing.T) {
	size, small := resource.MustParse("64Mi"), resource.MustParse("8Mi")
	pod := &corev1.Pod{Spec: corev1.PodSpec{Volumes: []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		{Name: "own", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &small}}},
		{Name: "own-unbounded", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}},
	}}}
	c := &corev1.Container{Name: "app", VolumeMounts: []corev1.VolumeMount{
		{Name: "data", MountPath: "/data"}, {Name: "mem", MountPath: "/m", ReadOnly: true}, {Name: "cfg", MountPath: "/etc/c"},
		{Name: "own", MountPath: "/own"}, {Name: "own", MountPath: "/own-again", ReadOnly: true}, {Name: "own-unbounded", MountPath: "/u"},
	}}
	// "data" is also the init container's, so it stays a share; the
	// others are the app's alone, so they get disks.
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/d"}}}}
	pod.Spec.Containers = []corev1.Container{*c}
	got, err := mountsFor(pod, c, "/pods/x")
	disk := "/pods/x/volumes/vk-applevm.io~empty-dir-disk/"
	want := []container.Mount{
		{Destination: "/data", Kind: container.MountShare, HostPath: "/pods/x/volumes/kubernetes.io~empty-dir/data"},
		{Destination: "/m", Kind: container.MountTmpfs, SizeBytes: 64 << 20, ReadOnly: true},
		{Destination: "/etc/c", Kind: container.MountFiles, Volume: "cfg", ReadOnly: true},
		{Destination: "/own", Kind: container.MountDisk, HostPath: disk + "own.ext4", SizeBytes: 8 << 20},
		{Destination: "/own-again", Kind: container.MountDisk, HostPath: disk + "own.ext4", SizeBytes: 8 << 20, ReadOnly: true},
		{Destination: "/u", Kind: container.MountDisk, HostPath: disk + "own-unbounded.ext4", SizeBytes: DefaultEmptyDirDiskBytes},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []corev1.VolumeMount{{Name: "nosuch", MountPath: "/x"}, {Name: "data", MountPath: "/x", SubPath: "a"}, {Name: "host", MountPath: "/h"}} {
		if _, err := mountsFor(pod, &corev1.Container{VolumeMounts: []corev1.VolumeMount{bad}}, "/p"); !env.IsConfigError(err) {
			t.Errorf("%+v: err %v, want a configuration error", bad, err)
		}
	}
}

func TestBindPodIP(t *testing.T) {
	p := startPlan{Process: container.ProcessConfig{
		Env:  []string{"POD_IP=" + podIPPlaceholder, "URL=http://" + podIPPlaceholder + ":80", "PLAIN=x"},
		Args: []string{"serve", "--addr=" + podIPPlaceholder},
	}}
	got := p.bind("10.89.0.7")
	if !reflect.DeepEqual(got.Env, []string{"POD_IP=10.89.0.7", "URL=http://10.89.0.7:80", "PLAIN=x"}) || got.Args[1] != "--addr=10.89.0.7" {
		t.Fatalf("%+v", got)
	}
	if p.Process.Env[0] != "POD_IP="+podIPPlaceholder {
		t.Fatal("bind changed the plan")
	}
}

func TestHostnameAndDNS(t *testing.T) {
	long := strings.Repeat("a", 62) + "-b"
	if got := podHostname(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: long}}); got != strings.Repeat("a", 62) {
		t.Fatalf("hostname %q", got)
	}
	if got := podHostname(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Hostname: "h"}}); got != "h" {
		t.Fatalf("hostname %q", got)
	}
	w := &Worker{cfg: &Config{ClusterDNS: []string{"10.0.0.10"}, ClusterDomain: "cluster.local"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}}
	dns := w.podDNS(pod)
	if dns == nil || dns.Nameservers[0] != "10.0.0.10" || dns.Searches[0] != "ns.svc.cluster.local" || dns.Options[0] != "ndots:5" {
		t.Fatalf("ClusterFirst: %+v", dns)
	}
	pod.Spec.DNSPolicy = corev1.DNSDefault
	if w.podDNS(pod) != nil {
		t.Fatal("Default uses the node's resolvers")
	}
	two := "2"
	pod.Spec.DNSPolicy = corev1.DNSNone
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"x"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "edns0"}}}
	dns = w.podDNS(pod)
	if !reflect.DeepEqual(dns, &container.DNS{Nameservers: []string{"1.1.1.1"}, Searches: []string{"x"}, Options: []string{"ndots:2", "edns0"}}) {
		t.Fatalf("None: %+v", dns)
	}
	aliases := hostAliases(&corev1.Pod{Spec: corev1.PodSpec{HostAliases: []corev1.HostAlias{{IP: "1.2.3.4", Hostnames: []string{"a", "b"}}}}})
	if len(aliases) != 1 || aliases[0].IP != "1.2.3.4" || len(aliases[0].Names) != 2 {
		t.Fatalf("%+v", aliases)
	}
}

func TestIDs(t *testing.T) {
	id := VMID("uid-1", "app")
	if len(id) != 12 || id != VMID("uid-1", "app") || id == VMID("uid-1", "other") {
		t.Fatalf("VMID %q", id)
	}
	if got := PodDirName(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u"}}); got != "ns_p_u" {
		t.Fatal(got)
	}
	if processID(3) != "main-3" || MainProcessID(3) != "main-3" {
		t.Fatal(processID(3))
	}
}
