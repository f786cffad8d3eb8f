package provider

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestSlowPodsDoNotHoldUpOthers: a pod whose image pull hangs and a pod
// whose VM takes forever to boot hold nobody else up. Pods created after
// them, while both are stuck, reach Running; the stuck ones follow once
// released. A lock shared by the workers (the provider's, the runtime
// adapter's, one around pulls or creations) would keep the later pods
// waiting and fail the test.
func TestSlowPodsDoNotHoldUpOthers(t *testing.T) {
	h := newHarness(t)
	busybox := h.rt.images["busybox"]
	h.rt.images["slowpull"] = busybox
	h.rt.images["slowboot"] = busybox
	releasePull := h.rt.hold("pull/slowpull")
	releaseBoot := h.rt.hold("create/slowboot")
	t.Cleanup(func() { releasePull(); releaseBoot() })

	withImage := func(image string) corev1.Container {
		c := ctr("app", "run")
		c.Image = image
		return c
	}
	h.create(testPod("stuck-pull", withImage("slowpull")))
	h.create(testPod("stuck-boot", withImage("slowboot")))
	h.eventually("the first pod stuck in its pull", func() bool { return h.rt.isBlocked("pull/slowpull") })
	h.eventually("the second pod stuck in its VM's creation", func() bool { return h.rt.isBlocked("create/slowboot") })

	for i := range 3 {
		h.create(testPod(fmt.Sprintf("fast-%d", i), ctr("app", "run")))
	}
	for i := range 3 {
		h.waitFor(fmt.Sprintf("fast-%d", i), "running while two other pods are stuck", running)
	}
	if !h.rt.isBlocked("pull/slowpull") || !h.rt.isBlocked("create/slowboot") {
		t.Fatal("a stuck pod went on before it was released: the test proves nothing")
	}
	for _, name := range []string{"stuck-pull", "stuck-boot"} {
		if p, _ := h.pod(name); p != nil && running(p) {
			t.Fatalf("%s is Running before its pull or boot was released", name)
		}
	}

	releasePull()
	releaseBoot()
	h.waitFor("stuck-pull", "running once its pull finished", running)
	h.waitFor("stuck-boot", "running once its VM booted", running)
}
