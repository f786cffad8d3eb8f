// Package env resolves what a container's configuration refers to, as the
// kubelet does: its environment (service links, envFrom, env with
// valueFrom and $(VAR) expansion) and the downward API's field values,
// which files volumes use too.
package env

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Event reasons for environment resolution. They are the ones
// virtual-kubelet's own resolver emits (internal/podutils), so tools and its
// e2e suite that wait for them keep working.
const (
	ReasonOptionalConfigMapNotFound     = "OptionalConfigMapNotFound"
	ReasonOptionalConfigMapKeyNotFound  = "OptionalConfigMapKeyNotFound"
	ReasonOptionalSecretNotFound        = "OptionalSecretNotFound"
	ReasonOptionalSecretKeyNotFound     = "OptionalSecretKeyNotFound"
	ReasonMandatoryConfigMapNotFound    = "MandatoryConfigMapNotFound"
	ReasonMandatoryConfigMapKeyNotFound = "MandatoryConfigMapKeyNotFound"
	ReasonMandatorySecretNotFound       = "MandatorySecretNotFound"
	ReasonMandatorySecretKeyNotFound    = "MandatorySecretKeyNotFound"
	ReasonInvalidEnvVarNames            = "InvalidEnvironmentVariableNames"
)

// Objects gives the provider the objects a pod refers to (listers in
// the node, maps in tests). Missing objects return a NotFound API error.
type Objects interface {
	ConfigMap(namespace, name string) (*corev1.ConfigMap, error)
	Secret(namespace, name string) (*corev1.Secret, error)
	Services(namespace string) ([]*corev1.Service, error)
}

// Event is an event to record against the pod.
type Event struct {
	Type, Reason, Message string
}

// configError is a problem with the pod's configuration that keeps a
// container from being created (the kubelet's CreateContainerConfigError);
// it is retried, as the missing object may appear.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func ConfigErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

func IsConfigError(err error) bool {
	var ce *configError
	return errors.As(err, &ce)
}

// Context carries what environment resolution needs besides the pod.
type Context struct {
	Objects Objects
	// PodIP and HostIP answer status.podIP(s) and status.hostIP(s).
	PodIP  string
	HostIP string
	// NodeAllocatable fills resourceFieldRef limits a container does not
	// set, as the kubelet does.
	NodeAllocatable corev1.ResourceList
}

// ContainerEnv computes a container's environment in the kubelet's order:
// service variables, envFrom in order, then env in order with $(VAR)
// references expanded against what came before. It returns KEY=VALUE pairs
// and the events to record; a missing mandatory object is a configError.
func ContainerEnv(pod *corev1.Pod, c *corev1.Container, ec Context) ([]string, []Event, error) {
	var events []Event
	warn := func(reason, format string, args ...any) {
		events = append(events, Event{corev1.EventTypeWarning, reason, fmt.Sprintf(format, args...)})
	}
	env := newOrderedEnv()

	svcVars, err := serviceEnv(pod, ec.Objects)
	if err != nil {
		return nil, events, err
	}
	for _, kv := range svcVars {
		env.set(kv[0], kv[1])
	}

	for _, ef := range c.EnvFrom {
		var data map[string]string
		var kind, name string
		switch {
		case ef.ConfigMapRef != nil:
			kind, name = "configmap", ef.ConfigMapRef.Name
			cm, err := ec.Objects.ConfigMap(pod.Namespace, name)
			if err != nil {
				if !apierrors.IsNotFound(err) {
					return nil, events, fmt.Errorf("read configmap %q: %w", name, err)
				}
				if Optional(ef.ConfigMapRef.Optional) {
					warn(ReasonOptionalConfigMapNotFound, "configmap %q not found", name)
					continue
				}
				warn(ReasonMandatoryConfigMapNotFound, "configmap %q not found", name)
				return nil, events, ConfigErrorf("configmap %q not found", name)
			}
			data = cm.Data
		case ef.SecretRef != nil:
			kind, name = "secret", ef.SecretRef.Name
			s, err := ec.Objects.Secret(pod.Namespace, name)
			if err != nil {
				if !apierrors.IsNotFound(err) {
					return nil, events, fmt.Errorf("read secret %q: %w", name, err)
				}
				if Optional(ef.SecretRef.Optional) {
					warn(ReasonOptionalSecretNotFound, "secret %q not found", name)
					continue
				}
				warn(ReasonMandatorySecretNotFound, "secret %q not found", name)
				return nil, events, ConfigErrorf("secret %q not found", name)
			}
			data = make(map[string]string, len(s.Data))
			for k, v := range s.Data {
				data[k] = string(v)
			}
		default:
			continue
		}
		var invalid []string
		for _, k := range sortedKeys(data) {
			key := ef.Prefix + k
			if errs := validation.IsEnvVarName(key); len(errs) > 0 {
				invalid = append(invalid, key)
				continue
			}
			env.set(key, data[k])
		}
		if len(invalid) > 0 {
			warn(ReasonInvalidEnvVarNames, "keys [%s] from %s %s/%s were skipped since they are invalid as environment variable names",
				strings.Join(invalid, ", "), kind, pod.Namespace, name)
		}
	}

	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env.set(e.Name, Expand(e.Value, env.lookup))
			continue
		}
		v, ok, evs, err := envValueFrom(pod, c, e, ec)
		events = append(events, evs...)
		if err != nil {
			return nil, events, err
		}
		if ok {
			env.set(e.Name, v)
		}
	}
	return env.list(), events, nil
}

func envValueFrom(pod *corev1.Pod, c *corev1.Container, e corev1.EnvVar, ec Context) (string, bool, []Event, error) {
	var events []Event
	warn := func(reason, format string, args ...any) {
		events = append(events, Event{corev1.EventTypeWarning, reason, fmt.Sprintf(format, args...)})
	}
	vf := e.ValueFrom
	switch {
	case vf.FieldRef != nil:
		v, err := FieldValue(pod, vf.FieldRef.FieldPath, ec)
		if err != nil {
			return "", false, nil, ConfigErrorf("env %s: %v", e.Name, err)
		}
		return v, true, nil, nil
	case vf.ResourceFieldRef != nil:
		v, err := ResourceFieldValue(pod, c, vf.ResourceFieldRef, ec.NodeAllocatable)
		if err != nil {
			return "", false, nil, ConfigErrorf("env %s: %v", e.Name, err)
		}
		return v, true, nil, nil
	case vf.ConfigMapKeyRef != nil:
		ref := vf.ConfigMapKeyRef
		cm, err := ec.Objects.ConfigMap(pod.Namespace, ref.Name)
		if err != nil {
			if !apierrors.IsNotFound(err) {
				return "", false, nil, fmt.Errorf("read configmap %q: %w", ref.Name, err)
			}
			if Optional(ref.Optional) {
				warn(ReasonOptionalConfigMapNotFound, "skipping optional envvar %q: configmap %q not found", e.Name, ref.Name)
				return "", false, events, nil
			}
			warn(ReasonMandatoryConfigMapNotFound, "configmap %q not found", ref.Name)
			return "", false, events, ConfigErrorf("configmap %q not found", ref.Name)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if b, bok := cm.BinaryData[ref.Key]; bok {
				return string(b), true, nil, nil
			}
			if Optional(ref.Optional) {
				warn(ReasonOptionalConfigMapKeyNotFound, "skipping optional envvar %q: key %q does not exist in configmap %q", e.Name, ref.Key, ref.Name)
				return "", false, events, nil
			}
			warn(ReasonMandatoryConfigMapKeyNotFound, "key %q does not exist in configmap %q", ref.Key, ref.Name)
			return "", false, events, ConfigErrorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return v, true, nil, nil
	case vf.SecretKeyRef != nil:
		ref := vf.SecretKeyRef
		s, err := ec.Objects.Secret(pod.Namespace, ref.Name)
		if err != nil {
			if !apierrors.IsNotFound(err) {
				return "", false, nil, fmt.Errorf("read secret %q: %w", ref.Name, err)
			}
			if Optional(ref.Optional) {
				warn(ReasonOptionalSecretNotFound, "skipping optional envvar %q: secret %q not found", e.Name, ref.Name)
				return "", false, events, nil
			}
			warn(ReasonMandatorySecretNotFound, "secret %q not found", ref.Name)
			return "", false, events, ConfigErrorf("secret %q not found", ref.Name)
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if Optional(ref.Optional) {
				warn(ReasonOptionalSecretKeyNotFound, "skipping optional envvar %q: key %q does not exist in secret %q", e.Name, ref.Key, ref.Name)
				return "", false, events, nil
			}
			warn(ReasonMandatorySecretKeyNotFound, "key %q does not exist in secret %q", ref.Key, ref.Name)
			return "", false, events, ConfigErrorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
		}
		return string(v), true, nil, nil
	}
	return "", false, nil, ConfigErrorf("env %s: unsupported valueFrom", e.Name)
}

// FieldValue resolves a downward API field path.
func FieldValue(pod *corev1.Pod, path string, ec Context) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return ec.HostIP, nil
	case "status.podIP", "status.podIPs":
		return ec.PodIP, nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

// subscript parses `prefix['key']`.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

// formatMap renders labels/annotations as the kubelet's downward API does:
// sorted key="value" lines with Go-quoted values.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%s", k, strconv.Quote(m[k]))
	}
	return b.String()
}

// ResourceFieldValue resolves a resourceFieldRef; limits a container does
// not set default to the node's allocatable, as in the kubelet.
func ResourceFieldValue(pod *corev1.Pod, c *corev1.Container, ref *corev1.ResourceFieldSelector, alloc corev1.ResourceList) (string, error) {
	target := c
	if ref.ContainerName != "" && ref.ContainerName != c.Name {
		target = FindContainer(pod, ref.ContainerName)
		if target == nil {
			return "", fmt.Errorf("resourceFieldRef: no container %q", ref.ContainerName)
		}
	}
	kindName, ok := strings.CutPrefix(ref.Resource, "limits.")
	var q resource.Quantity
	if ok {
		q, ok = target.Resources.Limits[corev1.ResourceName(kindName)]
		if !ok {
			q = alloc[corev1.ResourceName(kindName)]
		}
	} else if kindName, ok = strings.CutPrefix(ref.Resource, "requests."); ok {
		q, ok = target.Resources.Requests[corev1.ResourceName(kindName)]
		if !ok {
			// An unset request defaults to the limit, then to 0 (cpu: the
			// kubelet reports at least 1 below after rounding up).
			q = target.Resources.Limits[corev1.ResourceName(kindName)]
		}
	} else {
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	// Round up, as the kubelet's ExtractContainerResourceValue does.
	if kindName == "cpu" {
		v := (q.MilliValue() + divisor.MilliValue() - 1) / divisor.MilliValue()
		return strconv.FormatInt(max(v, 1), 10), nil
	}
	v := (q.Value() + divisor.Value() - 1) / divisor.Value()
	return strconv.FormatInt(v, 10), nil
}

func FindContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// serviceEnv builds the Docker-links style variables for the services in
// the pod's namespace (when enableServiceLinks is unset or true) and always
// for the "kubernetes" service of the default namespace.
func serviceEnv(pod *corev1.Pod, objects Objects) ([][2]string, error) {
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	byName := map[string]*corev1.Service{}
	if links {
		svcs, err := objects.Services(pod.Namespace)
		if err != nil {
			return nil, fmt.Errorf("list services of namespace %s: %w", pod.Namespace, err)
		}
		for _, s := range svcs {
			byName[s.Name] = s
		}
	}
	if pod.Namespace != corev1.NamespaceDefault || !links {
		svcs, err := objects.Services(corev1.NamespaceDefault)
		if err != nil {
			return nil, fmt.Errorf("list services of namespace default: %w", err)
		}
		for _, s := range svcs {
			if s.Name == "kubernetes" {
				byName[s.Name] = s
			}
		}
	}
	var out [][2]string
	for _, name := range sortedKeys(byName) {
		s := byName[name]
		ip := s.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone {
			continue
		}
		prefix := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		if len(s.Spec.Ports) == 0 {
			continue
		}
		out = append(out, [2]string{prefix + "_SERVICE_HOST", ip}, [2]string{prefix + "_SERVICE_PORT", strconv.Itoa(int(s.Spec.Ports[0].Port))})
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				out = append(out, [2]string{prefix + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), strconv.Itoa(int(p.Port))})
			}
		}
		first := s.Spec.Ports[0]
		proto := strings.ToLower(string(first.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		hostPort := net.JoinHostPort(ip, strconv.Itoa(int(first.Port)))
		out = append(out, [2]string{prefix + "_PORT", proto + "://" + hostPort})
		for _, p := range s.Spec.Ports {
			pr := strings.ToLower(string(p.Protocol))
			if pr == "" {
				pr = "tcp"
			}
			port := strconv.Itoa(int(p.Port))
			base := prefix + "_PORT_" + port + "_" + strings.ToUpper(pr)
			out = append(out,
				[2]string{base, pr + "://" + net.JoinHostPort(ip, port)},
				[2]string{base + "_PROTO", pr},
				[2]string{base + "_PORT", port},
				[2]string{base + "_ADDR", ip})
		}
	}
	return out, nil
}

func Optional(b *bool) bool { return b != nil && *b }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// orderedEnv keeps the first position of every name, the last value.
type orderedEnv struct {
	order []string
	vals  map[string]string
}

func newOrderedEnv() *orderedEnv { return &orderedEnv{vals: map[string]string{}} }

func (e *orderedEnv) set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.order = append(e.order, k)
	}
	e.vals[k] = v
}

func (e *orderedEnv) lookup(k string) (string, bool) {
	v, ok := e.vals[k]
	return v, ok
}

func (e *orderedEnv) list() []string {
	out := make([]string, 0, len(e.order))
	for _, k := range e.order {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

// expand replaces $(VAR) with its value when VAR is defined, keeps it
// verbatim otherwise, and turns $$ into $ — Kubernetes' expansion rules for
// env values, command and args.
func Expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// Merge layers the container's environment over the image's.
func Merge(image, ctr []string) []string {
	e := newOrderedEnv()
	for _, list := range [][]string{image, ctr} {
		for _, kv := range list {
			k, v, _ := strings.Cut(kv, "=")
			e.set(k, v)
		}
	}
	return e.list()
}

// Lookup answers $(VAR) references from KEY=VALUE pairs.
func Lookup(env []string) func(string) (string, bool) {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}
