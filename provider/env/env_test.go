package env

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptrTo[T any](v T) *T { return &v }

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "a", "B": "$(A)"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for in, want := range map[string]string{
		"plain":           "plain",
		"$(A)":            "a",
		"x$(A)y$(A)":      "xaya",
		"$(MISSING)":      "$(MISSING)",
		"$$(A)":           "$(A)",
		"$$":              "$",
		"$(B)":            "$(A)", // values are not expanded recursively
		"unterminated $(": "unterminated $(",
		"cost $5":         "cost $5",
		"trailing $":      "trailing $",
	} {
		if got := Expand(in, lookup); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func envPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u-1",
			Labels: map[string]string{"app": "web", "tier": "front"}, Annotations: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{NodeName: "mac", ServiceAccountName: "sa", EnableServiceLinks: ptrTo(false)},
	}
}

func TestContainerEnvOrderSourcesAndExpansion(t *testing.T) {
	objects := &fakeObjects{
		configMaps: map[string]*corev1.ConfigMap{"ns/cm": {Data: map[string]string{"COLOR": "blue", "bad key": "x", "SIZE": "L"}}},
		secrets:    map[string]*corev1.Secret{"ns/sec": {Data: map[string][]byte{"TOKEN": []byte("s3cret")}}},
		services: map[string][]*corev1.Service{"default": {{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1", Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}}}}},
	}
	pod := envPod()
	c := corev1.Container{
		Name:    "app",
		EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}, Prefix: "CM_"}},
		Env: []corev1.EnvVar{
			{Name: "GREETING", Value: "hi $(CM_COLOR) $$(CM_COLOR) $(NOPE)"},
			{Name: "CM_SIZE", Value: "XL"},
			{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "TOKEN"}}},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		},
	}
	got, events, err := ContainerEnv(pod, &c, Context{Objects: objects, PodIP: "10.89.0.7", HostIP: "10.201.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"KUBERNETES_SERVICE_HOST=10.0.0.1", "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_SERVICE_PORT_HTTPS=443",
		"KUBERNETES_PORT=tcp://10.0.0.1:443", "KUBERNETES_PORT_443_TCP=tcp://10.0.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO=tcp", "KUBERNETES_PORT_443_TCP_PORT=443", "KUBERNETES_PORT_443_TCP_ADDR=10.0.0.1",
		"CM_COLOR=blue", "CM_SIZE=XL",
		"GREETING=hi blue $(CM_COLOR) $(NOPE)", "TOKEN=s3cret", "POD=p", "APP=web", "IP=10.89.0.7", "NODE=mac",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("env:\n got %q\nwant %q", got, want)
	}
	if len(events) != 1 || events[0].Reason != ReasonInvalidEnvVarNames || !strings.Contains(events[0].Message, "CM_bad key") {
		t.Fatalf("events = %+v, want one InvalidEnvironmentVariableNames naming CM_bad key", events)
	}
}

func TestContainerEnvMissingObjects(t *testing.T) {
	objects := &fakeObjects{configMaps: map[string]*corev1.ConfigMap{"ns/cm": {Data: map[string]string{"K": "v"}}}}
	cmKey := func(name, key string, opt bool) corev1.EnvVar {
		return corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &opt}}}
	}
	secKey := func(name string, opt bool) corev1.EnvVar {
		return corev1.EnvVar{Name: "S", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "k", Optional: &opt}}}
	}
	tests := []struct {
		name       string
		env        []corev1.EnvVar
		envFrom    []corev1.EnvFromSource
		wantReason string
		wantErr    bool
	}{
		{"optional configmap", []corev1.EnvVar{cmKey("nope", "K", true)}, nil, ReasonOptionalConfigMapNotFound, false},
		{"mandatory configmap", []corev1.EnvVar{cmKey("nope", "K", false)}, nil, ReasonMandatoryConfigMapNotFound, true},
		{"optional key", []corev1.EnvVar{cmKey("cm", "Q", true)}, nil, ReasonOptionalConfigMapKeyNotFound, false},
		{"mandatory key", []corev1.EnvVar{cmKey("cm", "Q", false)}, nil, ReasonMandatoryConfigMapKeyNotFound, true},
		{"optional secret", []corev1.EnvVar{secKey("nope", true)}, nil, ReasonOptionalSecretNotFound, false},
		{"mandatory secret", []corev1.EnvVar{secKey("nope", false)}, nil, ReasonMandatorySecretNotFound, true},
		{"mandatory secret envFrom", nil, []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}}, ReasonMandatorySecretNotFound, true},
		{"optional configmap envFrom", nil, []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Optional: ptrTo(true)}}}, ReasonOptionalConfigMapNotFound, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := corev1.Container{Name: "c", Env: tc.env, EnvFrom: tc.envFrom}
			_, events, err := ContainerEnv(envPod(), &c, Context{Objects: objects})
			if tc.wantErr != (err != nil) || (err != nil && !IsConfigError(err)) {
				t.Fatalf("err = %v, want config error: %v", err, tc.wantErr)
			}
			if len(events) != 1 || events[0].Reason != tc.wantReason || events[0].Type != corev1.EventTypeWarning {
				t.Fatalf("events = %+v, want one %s", events, tc.wantReason)
			}
		})
	}
}

func TestResourceFieldRef(t *testing.T) {
	pod := envPod()
	c := corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
	}}
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("6"), corev1.ResourceMemory: resource.MustParse("8Gi")}
	for _, tc := range []struct {
		res, divisor, want string
	}{
		{"limits.memory", "", "268435456"},
		{"limits.memory", "1Mi", "256"},
		{"limits.cpu", "", "6"}, // unset limit: node allocatable
		{"requests.cpu", "1m", "250"},
		{"requests.cpu", "", "1"}, // rounded up
		{"requests.memory", "1Mi", "256"},
	} {
		sel := &corev1.ResourceFieldSelector{Resource: tc.res}
		if tc.divisor != "" {
			sel.Divisor = resource.MustParse(tc.divisor)
		}
		got, err := ResourceFieldValue(pod, &c, sel, alloc)
		if err != nil || got != tc.want {
			t.Errorf("%s/%s = %q, %v; want %q", tc.res, tc.divisor, got, err, tc.want)
		}
	}
}

func TestDownwardFieldFormats(t *testing.T) {
	got, err := FieldValue(envPod(), "metadata.labels", Context{})
	if err != nil || got != "app=\"web\"\ntier=\"front\"" {
		t.Fatalf("labels = %q, %v", got, err)
	}
	if _, err := FieldValue(envPod(), "spec.bogus", Context{}); err == nil {
		t.Fatal("unknown field path accepted")
	}
}
