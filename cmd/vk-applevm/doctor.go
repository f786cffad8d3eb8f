package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/spf13/cobra"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/internal/doctor"
	"github.com/vk-applevm/vk-applevm/internal/hostinfo"
	"github.com/vk-applevm/vk-applevm/network/switchnet"
	"github.com/vk-applevm/vk-applevm/network/vswitch"
	"github.com/vk-applevm/vk-applevm/vm/shim"
	"github.com/vk-applevm/vk-applevm/vm/vz/kernelformat"
	"golang.org/x/sys/unix"
)

func init() { register(newDoctorCommand) }

func newDoctorCommand(g *globals) *cobra.Command {
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "doctor [--kubeconfig FILE]",
		Short: "Check that this machine can run the node, and say how to fix what is wrong",
		Long: `doctor checks the hypervisor, the guest kernel and initrd, the state root,
its disk space and the pod network's switch; with --kubeconfig also the
cluster: reachable, the RBAC the node needs, and the clock against the API
server's. It exits 1 when a check fails.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := doctor.Run(cmd.Context(), g.doctorChecks(kubeconfig))
			rep.Print(cmd.OutOrStdout())
			if rep.Failed() {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "also check the cluster this kubeconfig reaches")
	return cmd
}

// Thresholds of the disk check: below minFreeBytes images cannot be pulled
// and VMs' scratch disks fill; below warnFreeBytes image GC will be busy.
const (
	minFreeBytes  = 1 << 30
	warnFreeBytes = 5 << 30
	// maxClockSkew: tokens and certificates are checked against the API
	// server's clock; a few seconds are harmless.
	maxClockSkew = 5 * time.Second
)

func (g *globals) doctorChecks(kubeconfig string) []doctor.Check {
	checks := []doctor.Check{
		{Name: "hypervisor", Run: g.checkHypervisor},
		{Name: "guest kernel and initrd", Run: g.checkGuest},
		{Name: "shim binary", Run: checkShimBinary},
		{Name: "state root", Run: g.checkStateRoot},
		{Name: "disk space", Run: g.checkDisk},
		{Name: "pod network", Run: g.checkSwitch},
	}
	if kubeconfig == "" {
		return append(checks, doctor.Check{Name: "cluster", Run: func(context.Context) doctor.Result {
			return doctor.Result{Status: doctor.Skip, Detail: "no --kubeconfig given"}
		}})
	}
	c := &clusterChecks{kubeconfig: kubeconfig}
	return append(checks,
		doctor.Check{Name: "cluster", Run: c.reach},
		doctor.Check{Name: "cluster RBAC", Run: c.rbac},
		doctor.Check{Name: "clock", Run: c.clock},
	)
}

func (g *globals) checkHypervisor(ctx context.Context) doctor.Result {
	drv := g.drivers()[defaultDriver]
	if err := drv.Check(ctx); err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: err.Error(), Fix: hypervisorFix}
	}
	return doctor.Result{Detail: drv.Name() + " works"}
}

func (g *globals) checkGuest(context.Context) doctor.Result {
	b, err := guest.Find(g.guestDir)
	if err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: err.Error(), Fix: guestFix + "; or point --guest (VKAV_GUEST_DIR) at a bundle"}
	}
	for _, f := range []string{b.Kernel, b.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return doctor.Result{Status: doctor.Fail, Detail: err.Error(), Fix: guestFix}
		}
	}
	if err := checkKernelFormat(b); err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: err.Error(), Fix: guestFix}
	}
	detail := fmt.Sprintf("%s kernel %s", b.Arch, b.KernelRelease)
	if b.Arch != runtime.GOARCH {
		return doctor.Result{Status: doctor.Warn, Detail: detail + " on a " + runtime.GOARCH + " host: every VM is emulated",
			Fix: guestFix + " for this machine's architecture"}
	}
	return doctor.Result{Detail: detail}
}

// checkShimBinary finds the per-VM helper every VM runs in
// (vk-applevm-shim next to this binary).
func checkShimBinary(context.Context) doctor.Result {
	bin, err := shim.FindBinary()
	if err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: err.Error(),
			Fix: "`make build` builds bin/vk-applevm-shim next to bin/vk-applevm; install both in one directory"}
	}
	return doctor.Result{Detail: bin}
}

// checkKernelFormat checks the kernel is what the hypervisor boots: an
// arm64 Image as vz loads it, an x86 bzImage.
func checkKernelFormat(b guest.Bundle) error {
	if b.Arch == "arm64" {
		return kernelformat.CheckFile(b.Kernel)
	}
	f, err := os.Open(b.Kernel)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, 0x206)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return fmt.Errorf("kernel %s: %w", b.Kernel, err)
	}
	if binary.LittleEndian.Uint32(hdr[0x202:]) != 0x53726448 { // "HdrS"
		return fmt.Errorf("kernel %s is not an x86 bzImage (no HdrS header)", b.Kernel)
	}
	return nil
}

func (g *globals) checkStateRoot(context.Context) doctor.Result {
	fi, err := os.Stat(g.root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		parent := existingParent(g.root)
		if unix.Access(parent, unix.W_OK) != nil {
			return doctor.Result{Status: doctor.Fail, Detail: g.root + " does not exist and " + parent + " is not writable",
				Fix: "create it (mkdir -m 700 " + g.root + ") or choose another with --root"}
		}
		return doctor.Result{Detail: g.root + " will be created (0700)"}
	case err != nil:
		return doctor.Result{Status: doctor.Fail, Detail: err.Error(), Fix: "choose another state root with --root"}
	case !fi.IsDir():
		return doctor.Result{Status: doctor.Fail, Detail: g.root + " is not a directory", Fix: "choose another state root with --root"}
	}
	if st, ok := fi.Sys().(*unix.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return doctor.Result{Status: doctor.Fail, Detail: fmt.Sprintf("%s belongs to uid %d, not %d", g.root, st.Uid, os.Geteuid()),
			Fix: "run as its owner, or chown it"}
	}
	if unix.Access(g.root, unix.W_OK) != nil {
		return doctor.Result{Status: doctor.Fail, Detail: g.root + " is not writable", Fix: "chmod u+w " + g.root}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return doctor.Result{Status: doctor.Warn, Detail: fmt.Sprintf("%s is mode %04o: other local users can read pods' logs and volumes", g.root, perm),
			Fix: "chmod 700 " + g.root}
	}
	return doctor.Result{Detail: g.root}
}

func existingParent(p string) string {
	for {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p
		}
		p = parent
	}
}

func (g *globals) checkDisk(context.Context) doctor.Result {
	dir := existingParent(g.root)
	disk, err := hostinfo.ReadDisk(dir)
	if err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: err.Error()}
	}
	free := int64(disk.FreeBytes)
	detail := fmt.Sprintf("%.1f GiB free under %s", float64(free)/(1<<30), dir)
	fix := "free space on that filesystem (vk-applevm images prune) or move the state root with --root"
	switch {
	case free < minFreeBytes:
		return doctor.Result{Status: doctor.Fail, Detail: detail + ": images and VM disks need at least 1 GiB", Fix: fix}
	case free < warnFreeBytes:
		return doctor.Result{Status: doctor.Warn, Detail: detail + ": image garbage collection will run often", Fix: fix}
	}
	return doctor.Result{Detail: detail}
}

func (g *globals) checkSwitch(ctx context.Context) doctor.Result {
	st, err := vswitch.NewClient(switchnet.SwitchDir(g.root)).Status(ctx)
	if err != nil {
		return doctor.Result{Detail: "the switch is not running (the first container or the node starts it)"}
	}
	plugged := 0
	for _, ep := range st.Endpoints {
		if ep.Plugged {
			plugged++
		}
	}
	detail := fmt.Sprintf("switch pid %d serving %v, %d of %d VMs plugged in", st.Pid, st.Subnet, plugged, len(st.Endpoints))
	if plugged < len(st.Endpoints) {
		return doctor.Result{Status: doctor.Warn, Detail: detail,
			Fix: "a VM whose helper is gone stays unplugged: `vk-applevm ps -a` shows it; remove it with `vk-applevm rm -f`"}
	}
	return doctor.Result{Detail: detail}
}

// clusterChecks talk to the cluster a kubeconfig names.
type clusterChecks struct {
	kubeconfig string
	cfg        *rest.Config
	client     *kubernetes.Clientset
	err        error
	reachable  bool // the API server answered reach
}

func (c *clusterChecks) connect() error {
	if c.cfg != nil || c.err != nil {
		return c.err
	}
	c.cfg, c.err = clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if c.err == nil {
		c.cfg.Timeout = 10 * time.Second
		c.client, c.err = kubernetes.NewForConfig(c.cfg)
	}
	return c.err
}

func (c *clusterChecks) reach(ctx context.Context) doctor.Result {
	if err := c.connect(); err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: err.Error(), Fix: "check the kubeconfig file"}
	}
	v, err := c.client.Discovery().ServerVersion()
	if err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: fmt.Sprintf("%s: %v", c.cfg.Host, err),
			Fix: "check the kubeconfig's server address and that this machine reaches it"}
	}
	c.reachable = true
	return doctor.Result{Detail: fmt.Sprintf("%s, Kubernetes %s", c.cfg.Host, v.GitVersion)}
}

// nodeNeeds is what the node does with its credentials beyond the Node
// authorizer's grants: watch Services and EndpointSlices for its pods
// (kube-proxy's role).
var nodeNeeds = []authorizationv1.ResourceAttributes{
	{Verb: "list", Resource: "services"},
	{Verb: "watch", Resource: "services"},
	{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"},
	{Verb: "watch", Group: "discovery.k8s.io", Resource: "endpointslices"},
}

func (c *clusterChecks) rbac(ctx context.Context) doctor.Result {
	if !c.reachable {
		return doctor.Result{Status: doctor.Skip, Detail: "the cluster is not reachable"}
	}
	var missing []string
	for _, ra := range nodeNeeds {
		ra := ra
		r, err := c.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}, metav1.CreateOptions{})
		if err != nil {
			return doctor.Result{Status: doctor.Fail, Detail: "SelfSubjectAccessReview: " + err.Error(), Fix: "check the kubeconfig's credentials"}
		}
		if !r.Status.Allowed {
			missing = append(missing, ra.Verb+" "+ra.Resource)
		}
	}
	if len(missing) > 0 {
		return doctor.Result{Status: doctor.Warn, Detail: fmt.Sprintf("not allowed: %v; pods on the node will not resolve or reach Services", missing),
			Fix: "kubectl apply -f deploy/rbac/node-proxier.yaml (kube-proxy's read-only role for the nodes' group)"}
	}
	return doctor.Result{Detail: "Services and EndpointSlices readable"}
}

func (c *clusterChecks) clock(ctx context.Context) doctor.Result {
	if !c.reachable {
		return doctor.Result{Status: doctor.Skip, Detail: "the cluster is not reachable"}
	}
	rt, err := rest.TransportFor(c.cfg)
	if err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: err.Error()}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Host+"/version", nil)
	before := time.Now()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return doctor.Result{Status: doctor.Fail, Detail: err.Error()}
	}
	resp.Body.Close()
	after := time.Now()
	server, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return doctor.Result{Status: doctor.Warn, Detail: "the API server sent no Date header"}
	}
	// Date has whole seconds: the server's clock is within [server,
	// server+1s) at some instant between before and after.
	skew := time.Duration(0)
	switch {
	case server.Add(time.Second).Before(before):
		skew = before.Sub(server.Add(time.Second))
	case server.After(after):
		skew = server.Sub(after)
	}
	detail := fmt.Sprintf("within %s of the API server's", (skew + time.Second).Round(time.Second))
	if skew > maxClockSkew {
		return doctor.Result{Status: doctor.Warn, Detail: fmt.Sprintf("%s apart from the API server's", skew.Round(time.Second)),
			Fix: "turn on time synchronisation (timedatectl set-ntp true; on a Mac: System Settings → Date & Time)"}
	}
	return doctor.Result{Detail: detail}
}
