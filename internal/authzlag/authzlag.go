// Package authzlag rides out the Node authorizer's lag: it learns that a
// pod is bound to a node from its own informer, a moment after the node
// sees the pod, and until then refuses the node the pod's secrets,
// configMaps and service account tokens. The kubelet's watch-based
// managers likewise wait up to a second for their first read.
package authzlag

import (
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

// Backoff asks every 100 ms for 3 s: the lag was seen to exceed the
// kubelet's second on a loaded 2-core machine (e2e under make test).
var Backoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 1, Steps: 30}

// Retry calls fn until it is not refused (Forbidden) or b is spent, and
// returns its last error.
func Retry(b wait.Backoff, fn func() error) error {
	return retry.OnError(b, apierrors.IsForbidden, fn)
}
