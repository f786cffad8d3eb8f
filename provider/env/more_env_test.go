package env

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func TestServiceLinks(t *testing.T) {
	objects := &fakeObjects{services: map[string][]*corev1.Service{
		"ns": {
			svc("my-db", "10.0.0.5", corev1.ServicePort{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}, corev1.ServicePort{Name: "metrics", Port: 9187, Protocol: corev1.ProtocolUDP}),
			svc("headless", corev1.ClusterIPNone, corev1.ServicePort{Port: 80}),
			svc("noports", "10.0.0.6"),
		},
		"default": {svc("kubernetes", "10.0.0.1", corev1.ServicePort{Name: "https", Port: 443}), svc("other", "10.0.0.7", corev1.ServicePort{Port: 1})},
	}}
	pod := envPod()
	pod.Spec.EnableServiceLinks = nil // unset means enabled
	got, err := serviceEnv(pod, objects)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range got {
		m[kv[0]] = kv[1]
	}
	for k, v := range map[string]string{
		"MY_DB_SERVICE_HOST": "10.0.0.5", "MY_DB_SERVICE_PORT": "5432", "MY_DB_SERVICE_PORT_PG": "5432", "MY_DB_SERVICE_PORT_METRICS": "9187",
		"MY_DB_PORT": "tcp://10.0.0.5:5432", "MY_DB_PORT_9187_UDP": "udp://10.0.0.5:9187", "MY_DB_PORT_9187_UDP_PROTO": "udp",
		"KUBERNETES_SERVICE_HOST": "10.0.0.1",
	} {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	for _, k := range []string{"HEADLESS_SERVICE_HOST", "NOPORTS_SERVICE_HOST", "OTHER_SERVICE_HOST"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s must not be set", k)
		}
	}
	no := false
	pod.Spec.EnableServiceLinks = &no
	got, _ = serviceEnv(pod, objects)
	for _, kv := range got {
		if kv[0] == "MY_DB_SERVICE_HOST" {
			t.Fatal("enableServiceLinks false still links the namespace's services")
		}
	}
	if len(got) == 0 || got[0][0] != "KUBERNETES_SERVICE_HOST" {
		t.Fatalf("the kubernetes service is always linked: %v", got)
	}
}

func TestFieldValues(t *testing.T) {
	pod := envPod()
	ec := Context{PodIP: "10.1.1.1", HostIP: "10.2.2.2"}
	for path, want := range map[string]string{
		"metadata.name": "p", "metadata.namespace": "ns", "metadata.uid": "u-1",
		"metadata.labels['tier']": "front", "metadata.annotations['a']": "b", "metadata.labels['none']": "",
		"metadata.labels": "app=\"web\"\ntier=\"front\"", "spec.nodeName": "mac", "spec.serviceAccountName": "sa",
		"status.podIP": "10.1.1.1", "status.podIPs": "10.1.1.1", "status.hostIP": "10.2.2.2", "status.hostIPs": "10.2.2.2",
	} {
		got, err := FieldValue(pod, path, ec)
		if err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", path, got, err, want)
		}
	}
	if _, err := FieldValue(pod, "spec.nope", ec); err == nil {
		t.Error("an unsupported path must fail")
	}
}

func TestMergeAndLookup(t *testing.T) {
	got := Merge([]string{"PATH=/bin", "HOME=/root", "EMPTY="}, []string{"HOME=/home/app", "NEW=1"})
	if want := []string{"PATH=/bin", "HOME=/home/app", "EMPTY=", "NEW=1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Merge = %q, want %q", got, want)
	}
	l := Lookup(got)
	if v, ok := l("HOME"); !ok || v != "/home/app" {
		t.Fatal(v, ok)
	}
	if v, ok := l("EMPTY"); !ok || v != "" {
		t.Fatal("an empty value is defined")
	}
	if _, ok := l("MISSING"); ok {
		t.Fatal("undefined")
	}
}

func TestConfigErrors(t *testing.T) {
	err := ConfigErrorf("volume %q: %s", "v", "gone")
	if !IsConfigError(err) || err.Error() != `volume "v": gone` {
		t.Fatalf("%v", err)
	}
	if IsConfigError(nil) {
		t.Fatal("nil is not a configuration error")
	}
	c := &corev1.Container{Name: "x"}
	if FindContainer(&corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{*c}}}, "x") == nil {
		t.Fatal("init containers are found too")
	}
	if FindContainer(&corev1.Pod{}, "x") != nil {
		t.Fatal("found a container that is not there")
	}
}
