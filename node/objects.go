package node

import (
	"context"
	"sync"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/authzlag"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/util/watchlist"
)

// Under the Node authorizer a node may read only the secrets and configMaps
// of pods bound to it, one by one (get, or list/watch of a single name).
// virtual-kubelet v1.14.1's nodeutil.NewNode always starts informers over
// every secret and configMap of the cluster, which a node may not list:
// nodeScopedClient answers those cluster-wide list/watch calls with
// nothing, and the provider reads what its pods refer to through
// apiObjects, as the kubelet's secret and configMap managers do. Services
// stay on virtual-kubelet's informer: nodes may list and watch them.

// nodeScopedClient is the client virtual-kubelet's informers get.
type nodeScopedClient struct{ kubernetes.Interface }

// IsWatchListSemanticsUnSupported passes on what the wrapped client says
// about streaming lists (client-go's watchlist checks for it).
func (c nodeScopedClient) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(c.Interface)
}

func (c nodeScopedClient) CoreV1() corev1client.CoreV1Interface {
	return scopedCoreV1{c.Interface.CoreV1()}
}

type scopedCoreV1 struct{ corev1client.CoreV1Interface }

func (c scopedCoreV1) Secrets(namespace string) corev1client.SecretInterface {
	return noListSecrets{c.CoreV1Interface.Secrets(namespace)}
}

func (c scopedCoreV1) ConfigMaps(namespace string) corev1client.ConfigMapInterface {
	return noListConfigMaps{c.CoreV1Interface.ConfigMaps(namespace)}
}

type noListSecrets struct{ corev1client.SecretInterface }

func (noListSecrets) List(context.Context, metav1.ListOptions) (*corev1.SecretList, error) {
	return &corev1.SecretList{}, nil
}

func (noListSecrets) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return newIdleWatch(ctx, opts, &corev1.Secret{}), nil
}

type noListConfigMaps struct {
	corev1client.ConfigMapInterface
}

func (noListConfigMaps) List(context.Context, metav1.ListOptions) (*corev1.ConfigMapList, error) {
	return &corev1.ConfigMapList{}, nil
}

func (noListConfigMaps) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return newIdleWatch(ctx, opts, &corev1.ConfigMap{}), nil
}

// idleWatch delivers no object and ends when stopped or ctx ends. Asked
// for a streaming list (sendInitialEvents), it first sends the bookmark
// that ends the (empty) initial list.
type idleWatch struct {
	ch   chan watch.Event
	stop chan struct{}
	once sync.Once
}

func newIdleWatch(ctx context.Context, opts metav1.ListOptions, bookmark metav1.Object) *idleWatch {
	w := &idleWatch{ch: make(chan watch.Event), stop: make(chan struct{})}
	go func() {
		defer close(w.ch)
		if opts.SendInitialEvents != nil && *opts.SendInitialEvents {
			bookmark.SetResourceVersion("1")
			bookmark.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
			select {
			case w.ch <- watch.Event{Type: watch.Bookmark, Object: bookmark.(runtime.Object)}:
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-w.stop:
		case <-ctx.Done():
		}
	}()
	return w
}

func (w *idleWatch) Stop()                          { w.once.Do(func() { close(w.stop) }) }
func (w *idleWatch) ResultChan() <-chan watch.Event { return w.ch }

// objectTTL is how long a read secret or configMap is reused: the
// kubelet's cache-based manager default (a minute) is slower to show
// updates in volumes; the provider refreshes volumes often, so a short TTL
// keeps both the API load and the update delay small.
const objectTTL = 5 * time.Second

// apiObjects reads the secrets and configMaps the provider asks for from
// the API server by name, with a short cache; services come from
// virtual-kubelet's informer.
type apiObjects struct {
	client   kubernetes.Interface
	services corev1listers.ServiceLister
	now      func() time.Time
	// refusalBackoff is how a Forbidden read is asked again.
	refusalBackoff wait.Backoff

	mu    sync.Mutex
	cache map[objectKey]cachedObject
	// fetching makes the pods that start together and refer to the same
	// object (every pod of a namespace mounts its kube-root-ca.crt) wait
	// for one read instead of each sending its own: measured with 20 pods
	// created at once (hack/bench churn), 12 reads of one configMap before.
	fetching singleflight.Group
}

type objectKey struct{ kind, namespace, name string }

type cachedObject struct {
	obj     any
	err     error
	fetched time.Time
}

func newAPIObjects(client kubernetes.Interface, services corev1listers.ServiceLister) *apiObjects {
	return &apiObjects{client: client, services: services, now: time.Now, refusalBackoff: authzlag.Backoff, cache: map[objectKey]cachedObject{}}
}

// get returns the cached answer for key, or fetch's.
func (o *apiObjects) get(key objectKey, fetch func(context.Context) (any, error)) (any, error) {
	o.mu.Lock()
	c, ok := o.cache[key]
	o.mu.Unlock()
	if ok && o.now().Sub(c.fetched) < objectTTL {
		return c.obj, c.err
	}
	v, err, _ := o.fetching.Do(key.kind+"/"+key.namespace+"/"+key.name, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var obj any
		err := authzlag.Retry(o.refusalBackoff, func() (err error) {
			obj, err = fetch(ctx)
			return err
		})
		// Only answers are kept: a refusal or a timeout is asked again
		// next time.
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.cache) > 4096 { // pods come and go; do not keep their objects forever
			clear(o.cache)
		}
		o.cache[key] = cachedObject{obj: obj, err: err, fetched: o.now()}
		return obj, err
	})
	return v, err
}

func (o *apiObjects) ConfigMap(namespace, name string) (*corev1.ConfigMap, error) {
	obj, err := o.get(objectKey{"configmap", namespace, name}, func(ctx context.Context) (any, error) {
		return o.client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	})
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.ConfigMap), nil
}

func (o *apiObjects) Secret(namespace, name string) (*corev1.Secret, error) {
	obj, err := o.get(objectKey{"secret", namespace, name}, func(ctx context.Context) (any, error) {
		return o.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	})
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.Secret), nil
}

func (o *apiObjects) Services(namespace string) ([]*corev1.Service, error) {
	return o.services.Services(namespace).List(labels.Everything())
}
