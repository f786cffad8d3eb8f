package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

// streamingClient claims streaming-list support, as a real clientset does,
// so informers use sendInitialEvents watches.
type streamingClient struct{ kubernetes.Interface }

func (streamingClient) IsWatchListSemanticsUnSupported() bool { return false }

// TestScopedClientInformersSyncEmpty: virtual-kubelet's cluster-wide
// secret and configMap informers sync on an empty list without asking the
// API server for what the Node authorizer refuses, with plain and with
// streaming lists.
func TestScopedClientInformersSyncEmpty(t *testing.T) {
	for _, streaming := range []bool{false, true} {
		cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}})
		cs.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetResource().Resource == "secrets" || a.GetResource().Resource == "configmaps" {
				t.Errorf("cluster-wide list of %s reached the API server", a.GetResource().Resource)
			}
			return false, nil, nil
		})
		var client kubernetes.Interface = nodeScopedClient{cs}
		if streaming {
			client = nodeScopedClient{streamingClient{cs}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		f := informers.NewSharedInformerFactory(client, 0)
		secrets := f.Core().V1().Secrets().Informer()
		configMaps := f.Core().V1().ConfigMaps().Informer()
		f.Start(ctx.Done())
		if !cache.WaitForCacheSync(ctx.Done(), secrets.HasSynced, configMaps.HasSynced) {
			t.Fatalf("streaming=%v: informers never synced", streaming)
		}
		if n := len(secrets.GetStore().List()); n != 0 {
			t.Fatalf("streaming=%v: %d secrets in the informer, want none", streaming, n)
		}
		cancel()
		f.Shutdown()
	}
}

func TestAPIObjectsReadByNameWithShortCache(t *testing.T) {
	cs := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"}, Data: map[string]string{"k": "v1"}})
	gets := 0
	cs.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets++
		return false, nil, nil
	})
	f := informers.NewSharedInformerFactory(cs, 0)
	o := newAPIObjects(cs, f.Core().V1().Services().Lister())
	clock := time.Unix(1000, 0)
	o.now = func() time.Time { return clock }

	cm, err := o.ConfigMap("ns", "cm")
	if err != nil || cm.Data["k"] != "v1" {
		t.Fatalf("ConfigMap = %v, %v", cm, err)
	}
	cm.Data["k"] = "v2"
	if _, err := cs.CoreV1().ConfigMaps("ns").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if cm, _ := o.ConfigMap("ns", "cm"); gets != 1 || cm.Data["k"] != "v2" && cm.Data["k"] != "v1" {
		t.Fatalf("within the TTL: %d GETs", gets)
	}
	clock = clock.Add(objectTTL)
	if cm, _ := o.ConfigMap("ns", "cm"); gets != 2 || cm.Data["k"] != "v2" {
		t.Fatalf("after the TTL: %d GETs, data %v", gets, cm.Data)
	}
	// A missing object is a NotFound error, as from a lister.
	if _, err := o.Secret("ns", "nope"); !apierrors.IsNotFound(err) {
		t.Fatalf("missing secret: %v", err)
	}
	var nf *apierrors.StatusError
	if _, err := o.ConfigMap("ns", "nope"); !errors.As(err, &nf) {
		t.Fatalf("missing configMap: %T %v", err, err)
	}
	// A refusal is not kept: the next read asks again.
	o.refusalBackoff = wait.Backoff{Steps: 1}
	refused := 0
	cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		refused++
		return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "s", errors.New("no relationship found"))
	})
	for range 2 {
		if _, err := o.Secret("ns", "s"); !apierrors.IsForbidden(err) {
			t.Fatalf("refused secret: %v", err)
		}
	}
	if refused != 2 {
		t.Fatalf("a refusal was cached: %d GETs, want 2", refused)
	}
}

// A refusal from the Node authorizer, which learns of a bound pod after the
// node, is asked again: the read then succeeds, and a lasting refusal ends
// when the backoff is spent.
func TestAPIObjectsRefusalIsRetriedForAMoment(t *testing.T) {
	cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pull"}, Data: map[string][]byte{"k": []byte("v")}})
	gets := 0
	cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if gets++; gets <= 3 {
			return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "pull", errors.New("no relationship found between node and this object"))
		}
		return false, nil, nil
	})
	o := newAPIObjects(cs, informers.NewSharedInformerFactory(cs, 0).Core().V1().Services().Lister())
	if s, err := o.Secret("ns", "pull"); err != nil || string(s.Data["k"]) != "v" || gets != 4 {
		t.Fatalf("Secret = %v, %v after %d GETs; want it after 4", s, err, gets)
	}
	o.refusalBackoff = wait.Backoff{Duration: time.Millisecond, Steps: 4}
	gets = -100
	if _, err := o.Secret("ns", "other"); !apierrors.IsForbidden(err) || gets != -96 {
		t.Fatalf("a lasting refusal: %v after %d GETs", err, gets+100)
	}
}

// Pods that start together and mount the same object cause one read of it,
// not one each.
func TestAPIObjectsConcurrentMissesShareOneRead(t *testing.T) {
	cs := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": "x"}})
	var gets atomic.Int32
	cs.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets.Add(1)
		time.Sleep(20 * time.Millisecond) // an API server's round trip
		return false, nil, nil
	})
	o := newAPIObjects(cs, informers.NewSharedInformerFactory(cs, 0).Core().V1().Services().Lister())
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cm, err := o.ConfigMap("ns", "kube-root-ca.crt"); err != nil || cm.Data["ca.crt"] != "x" {
				t.Errorf("ConfigMap = %v, %v", cm, err)
			}
		}()
	}
	wg.Wait()
	if n := gets.Load(); n != 1 {
		t.Errorf("20 concurrent reads sent %d GETs, want 1", n)
	}
}
