package node

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1listers "k8s.io/client-go/listers/core/v1"
)

// listerObjects serves the provider's configMap, secret and service
// lookups from virtual-kubelet's informer caches.
type listerObjects struct {
	configMaps corev1listers.ConfigMapLister
	secrets    corev1listers.SecretLister
	services   corev1listers.ServiceLister
}

func (o listerObjects) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	return o.configMaps.ConfigMaps(namespace).Get(name)
}

func (o listerObjects) Secret(namespace, name string) (*corev1.Secret, error) {
	return o.secrets.Secrets(namespace).Get(name)
}

func (o listerObjects) Services(namespace string) ([]*corev1.Service, error) {
	return o.services.Services(namespace).List(labels.Everything())
}
