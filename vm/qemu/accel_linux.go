package qemu

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/vk-applevm/vk-applevm/vm"
)

// Accelerator returns the accelerator for machines of the host's arch:
// VKAV_ACCEL if set; else KVM only if a probe boot of the floor initrd
// with KVM reached "ready" (verdict cached per QEMU version, probe kernel
// and /dev/kvm presence); else TCG.
func (d *Driver) Accelerator(ctx context.Context) (Verdict, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.verdict != nil {
		return *d.verdict, nil
	}
	v, err := d.chooseAccel(ctx)
	if err != nil {
		return Verdict{}, err
	}
	if v.Accel == AccelTCG {
		d.log.Info("using TCG (software emulation; boots take seconds)", "reason", v.Reason)
	} else {
		d.log.Info("using KVM", "reason", v.Reason)
	}
	d.verdict = &v
	return v, nil
}

func (d *Driver) chooseAccel(ctx context.Context) (Verdict, error) {
	switch env := os.Getenv(AccelEnv); env {
	case "kvm", "tcg":
		return Verdict{Accel(env), AccelEnv + "=" + env}, nil
	case "":
	default:
		return Verdict{}, fmt.Errorf("%s=%q: want kvm or tcg", AccelEnv, env)
	}
	_, kvmErr := os.Stat("/dev/kvm")
	if kvmErr != nil {
		return Verdict{AccelTCG, "no /dev/kvm"}, nil
	}
	if d.opts.Probe.Kernel == "" || d.opts.Probe.Initrd == "" {
		return Verdict{AccelTCG, "KVM not probed: no probe image configured (guest bundle floorInitrd)"}, nil
	}
	key, err := d.probeKey(ctx)
	if err != nil {
		return Verdict{}, err
	}
	cache := ""
	if d.opts.CacheDir != "" {
		cache = filepath.Join(d.opts.CacheDir, "accel-"+key+".json")
		if b, err := os.ReadFile(cache); err == nil {
			var v Verdict
			if json.Unmarshal(b, &v) == nil && (v.Accel == AccelKVM || v.Accel == AccelTCG) {
				v.Reason += " (cached)"
				return v, nil
			}
		}
	}
	d.log.Info("probing KVM with a test boot", "timeout", d.opts.ProbeTimeout)
	v := d.probeKVM(ctx)
	if ctx.Err() != nil {
		return Verdict{}, fmt.Errorf("probe KVM: %w", ctx.Err())
	}
	if cache != "" {
		if err := os.MkdirAll(d.opts.CacheDir, 0o755); err == nil {
			b, _ := json.Marshal(v)
			tmp := cache + ".tmp" + fmt.Sprint(os.Getpid())
			if os.WriteFile(tmp, b, 0o644) == nil {
				os.Rename(tmp, cache)
			}
		}
	}
	return v, nil
}

// probeKey identifies what the verdict depends on: the QEMU binary, the
// probe kernel (each by size, mtime and mode) and /dev/kvm (its device
// number). The binary is identified by stat, not by running `--version`:
// every shim chooses its accelerator, and exec'ing QEMU (hundreds of
// shared libraries) cost each VM start 30–300 ms on a loaded host; an
// upgrade replaces the file, which changes its mtime and size.
func (d *Driver) probeKey(ctx context.Context) (string, error) {
	bin, err := d.binary(runtime.GOARCH)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		bin = real
	}
	h := sha256.New()
	for _, p := range []string{bin, d.opts.Probe.Kernel, "/dev/kvm"} {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("probe key: %w", err)
		}
		fmt.Fprintln(h, p, st.Size(), st.ModTime().UnixNano(), st.Mode())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// probeKVM boots the floor initrd under KVM and waits for "ready".
func (d *Driver) probeKVM(ctx context.Context) Verdict {
	dir, err := os.MkdirTemp("", "vkav-kvmprobe-")
	if err != nil {
		return Verdict{AccelTCG, fmt.Sprintf("KVM probe could not run: %v", err)}
	}
	defer os.RemoveAll(dir)
	spec := vm.Spec{
		ID: "kvmprobe", Arch: runtime.GOARCH, Kernel: d.opts.Probe.Kernel, Initrd: d.opts.Probe.Initrd,
		CPUs: 1, MemoryMiB: 256, Ports: []string{vm.AgentPort}, ConsoleLog: filepath.Join(dir, "console.log"),
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d.opts.ProbeTimeout)
	defer cancel()
	m, err := d.start(ctx, spec, dir, AccelKVM)
	if err != nil {
		return Verdict{AccelTCG, fmt.Sprintf("KVM probe boot failed to start: %v", err)}
	}
	defer m.Kill()
	if err := readReady(ctx, m); err != nil {
		select {
		case <-m.Done():
			err = fmt.Errorf("%v; %v", err, m.Err()) // e.g. QEMU aborting on an MSR nested KVM refuses
		default:
		}
		return Verdict{AccelTCG, fmt.Sprintf("KVM probe boot did not reach ready within %s: %v", d.opts.ProbeTimeout, err)}
	}
	return Verdict{AccelKVM, fmt.Sprintf("KVM probe boot reached ready in %s", time.Since(start).Round(time.Millisecond))}
}

// readReady waits for the floor init's "ready\n" on the agent port.
func readReady(ctx context.Context, m vm.Machine) error {
	port, err := m.Port(ctx, vm.AgentPort)
	if err != nil {
		return err
	}
	defer port.Close()
	line := make(chan error, 1)
	go func() {
		s, err := bufio.NewReader(port).ReadString('\n')
		if err == nil && s != "ready\n" {
			err = fmt.Errorf("port said %q, want ready", s)
		}
		line <- err
	}()
	select {
	case err := <-line:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-m.Done():
		if err := <-line; err == nil {
			return nil
		}
		return errors.Join(errors.New("machine stopped before ready"), m.Err())
	}
}
