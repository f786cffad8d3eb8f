package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The CLI and a running node on one machine and one state root, the node
// inside the cluster's network namespace and the CLI in the root one (as
// when this made the node NotReady: "VM network vkav-…: vkh… Link not
// found"). A CLI container runs, answers exec and is removed without the
// node noticing: the node stays Ready throughout and its pod keeps its VM,
// its address and its restart count. What would act on the node's own VMs
// (`rm -f` of a pod's VM, `cleanup`) is refused with a clear error and
// changes nothing.
func TestCLIBesideTheNode(t *testing.T) {
	ne := clusterNode(t)
	name := uniqueName("beside")
	ne.apply(t, named(`
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:`+tolerate+`
  terminationGracePeriodSeconds: 2
  containers:
  - {name: c, image: BUSYBOX, command: ["sleep", "3600"]}
`, name))
	before := ne.waitPod(t, name, "Running", 4*time.Minute, podRunning)
	readySince := nodeReadySince(t, ne)

	// Sample the node's Ready condition while the CLI works.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var notReady []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ok, err := ne.c.NodeReady(ctx, ne.name)
			cancel()
			if err == nil && !ok {
				notReady = append(notReady, time.Now().Format(time.RFC3339))
			}
		}
	}()

	cli := func(args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := diesWithTest(exec.CommandContext(ctx, env.bin, append([]string{"--root", ne.root, "--guest", env.guestDir}, args...)...))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		r := result{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
		if err != nil && r.code == 0 {
			r.code = -1
		}
		t.Logf("vk-applevm %s → %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		return r
	}
	ctr := uniqueName("cli-beside")
	if r := cli("run", "-d", "--name", ctr, env.reg.Ref("busybox:latest"), "sleep", "3600"); r.code != 0 {
		t.Fatalf("run -d beside the node: exit %d: %s", r.code, r.stderr)
	}
	if r := cli("exec", ctr, "echo", "hello from beside"); r.code != 0 || r.stdout != "hello from beside\n" {
		t.Fatalf("exec: exit %d, %q", r.code, r.stdout)
	}
	var entries []struct{ ID, Name, IP, Pod string }
	if r := cli("ps", "--format", "json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &entries) != nil {
		t.Fatalf("ps: exit %d, %q", r.code, r.stdout)
	}
	var podVM, ctrIP string
	for _, e := range entries {
		switch {
		case e.Name == ctr:
			ctrIP = e.IP
		case strings.Contains(e.Pod, "/"+name+"/"):
			podVM = e.ID
		}
	}
	if podVM == "" || ctrIP == "" || ctrIP == before.Status.PodIP {
		t.Fatalf("ps: pod VM %q, container address %q (pod's %s): %+v", podVM, ctrIP, before.Status.PodIP, entries)
	}

	// The node's VMs are not the CLI's to remove while it runs.
	for _, args := range [][]string{{"rm", "-f", podVM}, {"stop", podVM}, {"cleanup"}} {
		r := cli(args...)
		if r.code == 0 || !strings.Contains(r.stderr, "in use by another node") || !strings.Contains(r.stderr, "kubectl") {
			t.Errorf("%s beside the node: exit %d, stderr %q; want a refusal naming the node", args[0], r.code, r.stderr)
		}
	}
	if r := cli("rm", "-f", ctr); r.code != 0 {
		t.Fatalf("rm -f: exit %d: %s", r.code, r.stderr)
	}
	close(stop)
	wg.Wait()

	if len(notReady) > 0 {
		t.Errorf("the node was NotReady at %v while the CLI worked beside it", notReady)
	}
	if since := nodeReadySince(t, ne); since != readySince {
		t.Errorf("the node's Ready condition changed at %s (was True since %s)", since, readySince)
	}
	after := ne.pod(t, name)
	b, a := before.Status.ContainerStatuses[0], after.Status.ContainerStatuses[0]
	if after.Status.Phase != "Running" || after.Status.PodIP != before.Status.PodIP || a.RestartCount != 0 || a.ContainerID != b.ContainerID || a.State.Running == nil {
		t.Fatalf("the pod changed: before %s %s %+v, after %s %s %+v", before.Status.Phase, before.Status.PodIP, b, after.Status.Phase, after.Status.PodIP, a)
	}
	if out := ne.kubectl(t, "exec", name, "--", "echo", "still here"); out != "still here\n" {
		t.Fatalf("kubectl exec after the CLI: %q", out)
	}
	if r := cli("ps", "-a", "--format", "json"); !strings.Contains(r.stdout, podVM) || strings.Contains(r.stdout, ctr) {
		t.Fatalf("after: the pod's VM should remain and the CLI container be gone: %s", r.stdout)
	}
}

// nodeReadySince is when the node's Ready condition last changed.
func nodeReadySince(t *testing.T, ne *nodeEnv) string {
	t.Helper()
	return strings.TrimSpace(ne.kubectl(t, "get", "node", ne.name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].lastTransitionTime}`))
}
