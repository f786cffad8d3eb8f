package volume

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/vk-applevm/vk-applevm/container"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"
)

var at = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

type objects struct {
	mu         sync.Mutex
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func (o *objects) ConfigMap(ns, name string) (*corev1.ConfigMap, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok := o.configMaps[name]; ok {
		return c, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (o *objects) Secret(ns, name string) (*corev1.Secret, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s, ok := o.secrets[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func (o *objects) Services(string) ([]*corev1.Service, error) { return nil, nil }

type vm struct {
	mu     sync.Mutex
	writes map[string][]container.File
	n      int
}

func (v *vm) WriteFiles(ctx context.Context, volume string, files []container.File) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.writes == nil {
		v.writes = map[string][]container.File{}
	}
	v.writes[volume] = files
	v.n++
	return nil
}

func (v *vm) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.n
}

type podSource struct {
	mu  sync.Mutex
	pod *corev1.Pod
	vms map[string]Writer
}

func (p *podSource) Pod() *corev1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pod
}
func (p *podSource) PodIP() string          { return "10.0.0.9" }
func (p *podSource) VMs() map[string]Writer { return p.vms }

func vol(name string, src corev1.VolumeSource) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: src}
}

func newManager(t *testing.T, pod *corev1.Pod, o *objects) (*Manager, *podSource, *vm, *testingclock.FakeClock) {
	clk := testingclock.NewFakeClock(at)
	v := &vm{}
	src := &podSource{pod: pod, vms: map[string]Writer{"app": v}}
	m := NewManager(Config{Objects: o, HostIP: "10.1.0.1", SyncPeriod: time.Minute, Clock: clk, Log: slog.New(slog.DiscardHandler),
		Allocatable: corev1.ResourceList{}}, src)
	return m, src, v, clk
}

func basePod(vols ...corev1.Volume) *corev1.Pod {
	var mounts []corev1.VolumeMount
	for _, v := range vols {
		mounts = append(mounts, corev1.VolumeMount{Name: v.Name, MountPath: "/" + v.Name})
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Volumes: vols, Containers: []corev1.Container{{Name: "app", VolumeMounts: mounts}}}}
}

func paths(files []container.File) map[string]string {
	out := map[string]string{}
	for _, f := range files {
		out[f.Path] = string(f.Content)
	}
	return out
}

func TestConfigMapSecretAndItems(t *testing.T) {
	mode := int32(0o600)
	o := &objects{configMaps: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{"a": "1", "b": "2"}, BinaryData: map[string][]byte{"bin": {0, 1}}}},
		secrets: map[string]*corev1.Secret{"sec": {Data: map[string][]byte{"token": []byte("s3")}}}}
	pod := basePod(
		vol("cfg", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}),
		vol("some", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
			Items: []corev1.KeyToPath{{Key: "b", Path: "sub/b.txt", Mode: &mode}}}}),
		vol("sec", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec"}}),
	)
	m, _, _, _ := newManager(t, pod, o)
	files, err := m.Files(context.Background(), "cfg")
	if got := paths(files); err != nil || got["a"] != "1" || got["b"] != "2" || got["bin"] != "\x00\x01" || files[0].Mode != 0o644 {
		t.Fatalf("configMap: %v %v", got, err)
	}
	files, err = m.Files(context.Background(), "some")
	if err != nil || len(files) != 1 || files[0].Path != "sub/b.txt" || files[0].Mode != 0o600 {
		t.Fatalf("items: %+v %v", files, err)
	}
	files, err = m.Files(context.Background(), "sec")
	if got := paths(files); err != nil || got["token"] != "s3" {
		t.Fatalf("secret: %v %v", got, err)
	}
	if _, err := m.Files(context.Background(), "nosuch"); err == nil {
		t.Fatal("an unknown volume must fail")
	}
}

func TestMissingAndOptional(t *testing.T) {
	yes := true
	pod := basePod(
		vol("opt", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Optional: &yes}}),
		vol("must", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "gone"}}),
		vol("key", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
			Items: []corev1.KeyToPath{{Key: "missing", Path: "x"}}}}),
	)
	m, _, _, _ := newManager(t, pod, &objects{configMaps: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{}}}})
	if files, err := m.Files(context.Background(), "opt"); err != nil || len(files) != 0 {
		t.Fatalf("optional missing: %v %v", files, err)
	}
	if _, err := m.Files(context.Background(), "must"); err == nil {
		t.Fatal("a missing secret must fail")
	}
	if _, err := m.Files(context.Background(), "key"); err == nil {
		t.Fatal("a missing key must fail")
	}
}

func TestDownwardAPIAndProjected(t *testing.T) {
	pod := basePod(
		vol("info", corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "ip", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}},
		}}}),
		vol("all", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
		}}}),
	)
	m, _, _, _ := newManager(t, pod, &objects{configMaps: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{"k": "v"}}}})
	files, err := m.Files(context.Background(), "info")
	if got := paths(files); err != nil || got["labels"] != `app="web"` || got["ip"] != "10.0.0.9" {
		t.Fatalf("downwardAPI: %v %v", got, err)
	}
	files, err = m.Files(context.Background(), "all")
	if got := paths(files); err != nil || got["k"] != "v" || got["name"] != "p" {
		t.Fatalf("projected: %v %v", got, err)
	}
}

func TestPathsMustStayInside(t *testing.T) {
	for _, p := range []string{"../x", "/abs", "..", "a/../../b", ""} {
		var s fileSet
		if err := s.add(p, nil, 0o644); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	var s fileSet
	if err := s.add("a/./b", []byte("x"), 0o644); err != nil || s.list()[0].Path != "a/b" {
		t.Fatalf("clean path: %v %+v", err, s.list())
	}
}

// TestSyncWritesOnlyChanges: the VM gets a volume again only when its
// content changed; a label change reaches a downwardAPI volume.
func TestSyncWritesOnlyChanges(t *testing.T) {
	o := &objects{configMaps: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{"a": "1"}}}}
	pod := basePod(
		vol("cfg", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}),
		vol("info", corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}),
		vol("scratch", corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}),
	)
	m, src, v, _ := newManager(t, pod, o)
	ctx := context.Background()
	files, _ := m.Files(ctx, "cfg")
	info, _ := m.Files(ctx, "info")
	m.Remember("app", []container.Mount{{Kind: container.MountFiles, Volume: "cfg", Files: files}, {Kind: container.MountFiles, Volume: "info", Files: info}})
	m.Sync(ctx)
	if v.count() != 0 {
		t.Fatal("unchanged volumes were written")
	}
	o.mu.Lock()
	o.configMaps["cfg"] = &corev1.ConfigMap{Data: map[string]string{"a": "2"}}
	o.mu.Unlock()
	m.Sync(ctx)
	if v.count() != 1 || paths(v.writes["cfg"])["a"] != "2" {
		t.Fatalf("writes %d %+v", v.count(), v.writes)
	}
	src.mu.Lock()
	src.pod = src.pod.DeepCopy()
	src.pod.Labels["app"] = "api"
	src.mu.Unlock()
	m.Sync(ctx)
	if v.count() != 2 || paths(v.writes["info"])["labels"] != `app="api"` {
		t.Fatalf("label change: %d %+v", v.count(), v.writes["info"])
	}
	m.Forget("app")
	m.Sync(ctx)
	if v.count() != 4 {
		t.Fatalf("after Forget every volume is written again: %d writes", v.count())
	}
}

func TestRunSyncsOnTheClockAndOnKick(t *testing.T) {
	o := &objects{configMaps: map[string]*corev1.ConfigMap{"cfg": {Data: map[string]string{"a": "1"}}}}
	pod := basePod(vol("cfg", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}))
	m, _, v, clk := newManager(t, pod, o)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	m.Kick()
	waitCount(t, v, 1)
	o.mu.Lock()
	o.configMaps["cfg"] = &corev1.ConfigMap{Data: map[string]string{"a": "3"}}
	o.mu.Unlock()
	for v.count() < 2 {
		clk.Step(time.Minute)
		time.Sleep(time.Millisecond)
	}
}

func waitCount(t *testing.T, v *vm, n int) {
	t.Helper()
	guard := time.Now().Add(10 * time.Second)
	for v.count() < n {
		if time.Now().After(guard) {
			t.Fatalf("%d writes, want %d", v.count(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestTokensRenewAt80Percent(t *testing.T) {
	client := fake.NewSimpleClientset()
	n := 0
	var clk *testingclock.FakeClock
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		req := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenRequest)
		n++
		req.Status = authv1.TokenRequestStatus{Token: "t" + string(rune('0'+n)), ExpirationTimestamp: metav1.NewTime(clk.Now().Add(time.Hour))}
		return true, req, nil
	})
	exp := int64(3600)
	pod := basePod(vol("tok", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp}}}}}))
	m, _, _, c := newManager(t, pod, &objects{})
	clk = c
	if _, err := m.Files(context.Background(), "tok"); err == nil {
		t.Fatal("without an API client a token volume must fail")
	}
	m.cfg.Client = client
	get := func() string {
		files, err := m.Files(context.Background(), "tok")
		if err != nil {
			t.Fatal(err)
		}
		return string(files[0].Content)
	}
	if get() != "t1" || get() != "t1" {
		t.Fatal("the token is cached")
	}
	clk.Step(47 * time.Minute)
	if get() != "t1" {
		t.Fatal("renewed before 80 % of its hour")
	}
	clk.Step(2 * time.Minute)
	if get() != "t2" {
		t.Fatal("not renewed after 80 % of its hour")
	}
}
