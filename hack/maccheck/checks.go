package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

// Names of the checks, in the order of the table.
const (
	checkDoctor   = "doctor"
	checkBoot     = "boot a VM (busybox)"
	checkAgent    = "agent round trip (exec)"
	checkExitCode = "busybox exit code"
	checkVMToVM   = "VM↔VM through the switch"
	checkChown    = "chown on an emptyDir-style volume"
	checkStop     = "stop within the grace period"
	checkRosetta  = "Rosetta (linux/amd64)"
	checkCleanup  = "nothing left behind"
)

// rosettaRuntime exists once Rosetta is installed (softwareupdate
// --install-rosetta); Virtualization.framework's Linux Rosetta share needs
// the same installation.
const rosettaRuntime = "/Library/Apple/usr/libexec/oah/libRosettaRuntime"

// Timeouts. A first boot under QEMU's TCG on a loaded machine takes tens of
// seconds; on a Mac a second or two. They bound a hang, they measure
// nothing.
const (
	bootTimeout = 3 * time.Minute
	cmdTimeout  = time.Minute
	// stopGrace is the grace period the stop check gives; the container
	// exits on SIGTERM at once, so stop must return well before it.
	stopGrace = 20 * time.Second
)

// checker runs the checks that need VMs, against one state root.
type checker struct {
	s   *session
	rep *Report
	// image is the busybox image; amd64Image the linux/amd64 one for
	// Rosetta ("" when the check does not apply).
	image, amd64Image string
	// nonce makes this run's outputs its own.
	nonce string
	// registry serves the images.
	registry *imagetest.Registry
}

// Container names, unique to this state root.
const (
	serverName = "maccheck-a"
	clientName = "maccheck-b"
)

// runVMChecks boots one long-lived VM (the server) and reuses it for every
// check it can serve; a second VM is the client of the VM↔VM check and
// carries the exit-code check, which needs a `run` of its own.
func (c *checker) runVMChecks(ctx context.Context) {
	server, ok := c.bootServer(ctx)
	if !ok {
		for _, name := range []string{checkAgent, checkExitCode, checkVMToVM, checkChown, checkStop} {
			c.rep.add(name, Fail, "not run: no VM booted")
		}
		return
	}
	c.agentRoundTrip(ctx)
	c.exitCodeAndTraffic(ctx)
	c.chown(ctx)
	c.stop(ctx, server)
}

// serverScript is the server VM's busybox: it serves the run's nonce over
// HTTP, says when it is up, and exits 143 on SIGTERM as a process that
// honours it does (the container's PID 1 gets no default action for
// SIGTERM, so the shell's trap is what honours it).
const serverScript = `trap 'echo got TERM; exit 143' TERM
echo %s > /tmp/index.html
httpd -p 8080 -h /tmp
echo ready
while true; do sleep 1; done`

func (c *checker) bootServer(ctx context.Context) (*background, bool) {
	pull := c.s.run(ctx, bootTimeout, "images", "pull", c.image)
	if pull.code != 0 {
		c.rep.add(checkBoot, Fail, "images pull %s: %s", c.image, pull)
		return nil, false
	}
	b, err := c.s.start("run", "--rm", "--name", serverName, "-v", "/data",
		c.image, "sh", "-c", fmt.Sprintf(serverScript, c.nonce))
	if err != nil {
		c.rep.add(checkBoot, Fail, "%v", err)
		return nil, false
	}
	start := time.Now()
	if err := b.waitOutput(ctx, "ready", bootTimeout); err != nil {
		b.cmd.Process.Kill()
		b.wait(cmdTimeout)
		c.rep.add(checkBoot, Fail, "run: %v", err)
		return nil, false
	}
	c.rep.add(checkBoot, Pass, "image pulled in %s; VM booted and busybox running %s after `run`",
		seconds(pull.took), seconds(time.Since(start)))
	return b, true
}

func (c *checker) agentRoundTrip(ctx context.Context) {
	r := c.s.run(ctx, cmdTimeout, "exec", serverName, "echo", c.nonce)
	if r.code != 0 || r.stdout != c.nonce+"\n" {
		c.rep.add(checkAgent, Fail, "exec echo: %s, stdout %q", r, r.stdout)
		return
	}
	c.rep.add(checkAgent, Pass, "exec echo answered in %s (CLI start, shim, agent and back)", seconds(r.took))
}

// exitCodeAndTraffic runs a second VM that fetches the server's page and
// exits 7 whatever the fetch did, so each check has its own verdict. No
// wget -T: Debian 12's static busybox (1.35) segfaults with it.
func (c *checker) exitCodeAndTraffic(ctx context.Context) {
	ip, err := c.s.containerIP(ctx, serverName)
	if err != nil {
		c.rep.add(checkExitCode, Fail, "not run: %v", err)
		c.rep.add(checkVMToVM, Fail, "not run: %v", err)
		return
	}
	url := "http://" + ip + ":8080/index.html"
	r := c.s.run(ctx, bootTimeout, "run", "--rm", "--name", clientName, c.image,
		"sh", "-c", "wget -q -O- "+url+"; exit 7")
	if r.code == 7 {
		c.rep.add(checkExitCode, Pass, "`run --rm busybox sh -c '…; exit 7'` exited 7 after %s", seconds(r.took))
	} else {
		c.rep.add(checkExitCode, Fail, "run exited %s, want 7", r)
	}
	if strings.Contains(r.stdout, c.nonce) {
		c.rep.add(checkVMToVM, Pass, "wget from the second VM got the first's page at %s", url)
	} else {
		c.rep.add(checkVMToVM, Fail, "wget %s from the second VM: stdout %q, stderr %q", url, r.stdout, lastLine(r.stderr))
	}
}

// chown does what a database image's entrypoint does with its data volume:
// root creates a directory and gives it to the service's user, which then
// writes there. The volume is `run -v /data`'s anonymous volume, a disk of
// the container's own, which is what an emptyDir only one container of a
// pod mounts is on this node: chown is what a virtio-fs share on vz
// refuses (single-uid, Code-Hex/vz#61), and what a disk volume exists for.
func (c *checker) chown(ctx context.Context) {
	r := c.s.run(ctx, cmdTimeout, "exec", serverName, "sh", "-c", "mkdir -p /data/db && chown 999:999 /data/db && stat -c %u:%g /data/db")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "999:999" {
		c.rep.add(checkChown, Fail, "as root, chown 999:999 on the volume: %s, stdout %q", r, r.stdout)
		return
	}
	r = c.s.run(ctx, cmdTimeout, "exec", "-u", "999:999", serverName, "sh", "-c", "echo "+c.nonce+" > /data/db/f && cat /data/db/f")
	if r.code != 0 || strings.TrimSpace(r.stdout) != c.nonce {
		c.rep.add(checkChown, Fail, "chown worked, but uid 999 cannot write in its directory: %s, stdout %q", r, r.stdout)
		return
	}
	c.rep.add(checkChown, Pass, "on an emptyDir-style disk volume (as a single-container pod's emptyDir), root chowned a directory to 999:999 and uid 999 wrote in it")
}

// stop stops the server VM with a grace period it does not need: the
// SIGTERM goes through the agent, the container exits 143 at once, and the
// attached `run` gets that exit code.
func (c *checker) stop(ctx context.Context, server *background) {
	r := c.s.run(ctx, stopGrace+cmdTimeout, "stop", "-t", fmt.Sprint(int(stopGrace.Seconds())), serverName)
	attached := server.wait(cmdTimeout)
	switch {
	case r.code != 0:
		c.rep.add(checkStop, Fail, "stop: %s", r)
	case r.took >= stopGrace:
		c.rep.add(checkStop, Fail, "stop took %s, the whole %s grace period: SIGTERM did not reach the container", seconds(r.took), stopGrace)
	case attached.code != 143 || !strings.Contains(attached.stdout, "got TERM"):
		c.rep.add(checkStop, Fail, "the attached run ended with %s and output %q; want 143 after \"got TERM\"", attached, attached.stdout)
	default:
		c.rep.add(checkStop, Pass, "SIGTERM reached the container, which exited 143; stop returned in %s of its %s grace period",
			seconds(r.took), stopGrace)
	}
}

// rosetta runs a linux/amd64 busybox through Rosetta, on a Mac where it is
// installed.
func (c *checker) rosetta(ctx context.Context) {
	switch {
	case runtime.GOOS != "darwin":
		c.rep.add(checkRosetta, NotApplicable, "Rosetta exists only on macOS")
		return
	case runtime.GOARCH != "arm64":
		c.rep.add(checkRosetta, NotApplicable, "Rosetta for Linux VMs needs Apple silicon")
		return
	case c.amd64Image == "":
		c.rep.add(checkRosetta, Skipped, "not installed (%s missing): softwareupdate --install-rosetta", rosettaRuntime)
		return
	}
	r := c.s.run(ctx, bootTimeout, "run", "--rm", "--platform", "linux/amd64", c.amd64Image, "uname", "-m")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "x86_64" {
		c.rep.add(checkRosetta, Fail, "run --platform linux/amd64 uname -m: %s, stdout %q", r, r.stdout)
		return
	}
	c.rep.add(checkRosetta, Pass, "an amd64 busybox said x86_64 in %s", seconds(r.took))
}

// cleanup removes every container of the run and checks none is left,
// nor any VM's files (the volume disk's image among them).
func (c *checker) cleanup(ctx context.Context) {
	for _, name := range []string{serverName, clientName} {
		c.s.run(ctx, cmdTimeout, "rm", "-f", name)
	}
	r := c.s.run(ctx, cmdTimeout, "ps", "-a", "--format", "json")
	vms, err := os.ReadDir(filepath.Join(c.s.root, "vms"))
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	switch {
	case r.code != 0:
		c.rep.add(checkCleanup, Fail, "ps -a: %s", r)
	case strings.TrimSpace(r.stdout) != "[]":
		c.rep.add(checkCleanup, Fail, "containers left after rm -f: %s", r.stdout)
	case err != nil:
		c.rep.add(checkCleanup, Fail, "list the VM directories: %v", err)
	case len(vms) > 0:
		c.rep.add(checkCleanup, Fail, "%d VM directories left under the state root after rm -f, e.g. %s", len(vms), vms[0].Name())
	default:
		c.rep.add(checkCleanup, Pass, "ps -a is empty after the run, and no VM's files are left")
	}
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%.1f s", d.Seconds())
}
