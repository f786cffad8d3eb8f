package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/vk-applevm/vk-applevm/internal/syncbuf"
)

// session runs the vk-applevm CLI against one state root and guest bundle,
// as a user types it.
type session struct {
	bin, guestDir, root string
	// log receives every command and its outcome (stderr with -v).
	log io.Writer
}

// result is how one CLI command ended.
type result struct {
	code           int // -1: it could not run, or timed out (err says which)
	stdout, stderr string
	took           time.Duration
	err            error
}

// String sums a result up for a table cell.
func (r result) String() string {
	s := fmt.Sprintf("exit %d", r.code)
	if r.err != nil {
		s = r.err.Error()
	}
	if e := lastLine(r.stderr); e != "" {
		s += ": " + e
	}
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (s *session) command(args ...string) *exec.Cmd {
	return exec.Command(s.bin, append([]string{"--root", s.root, "--guest", s.guestDir}, args...)...)
}

// run runs one CLI command to its end, killing it after timeout.
func (s *session) run(ctx context.Context, timeout time.Duration, args ...string) result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := s.command(args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-ctx.Done():
			cmd.Process.Kill()
			<-done
			err = fmt.Errorf("no answer within %s", timeout)
		}
	}
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		r.code, r.err = -1, err
	}
	fmt.Fprintf(s.log, "$ vk-applevm %s\n  → %s in %s\n  stdout: %q\n  stderr: %q\n",
		strings.Join(args, " "), r, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

// background is a CLI command left running: a container's attached `run`.
type background struct {
	cmd            *exec.Cmd
	stdout, stderr syncbuf.Buffer
	done           chan struct{}
	res            result
}

// start starts a CLI command without waiting for it.
func (s *session) start(args ...string) (*background, error) {
	b := &background{cmd: s.command(args...), done: make(chan struct{})}
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	fmt.Fprintf(s.log, "$ vk-applevm %s &\n", strings.Join(args, " "))
	start := time.Now()
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start vk-applevm %s: %w", args[0], err)
	}
	go func() {
		err := b.cmd.Wait()
		b.res = result{stdout: b.stdout.String(), stderr: b.stderr.String(), took: time.Since(start)}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			b.res.code = ee.ExitCode()
		default:
			b.res.code, b.res.err = -1, err
		}
		fmt.Fprintf(s.log, "  (background vk-applevm %s) → %s\n  stdout: %q\n  stderr: %q\n",
			args[0], b.res, b.res.stdout, b.res.stderr)
		close(b.done)
	}()
	return b, nil
}

// waitOutput waits until the command has printed want, or has ended.
func (b *background) waitOutput(ctx context.Context, want string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(b.stdout.String(), want) {
		select {
		case <-b.done:
			if strings.Contains(b.stdout.String(), want) {
				return nil
			}
			return fmt.Errorf("it ended (%s) before printing %q", b.res, want)
		case <-deadline.C:
			return fmt.Errorf("no %q within %s; stderr: %q", want, timeout, lastLine(b.stderr.String()))
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// wait waits for the command to end, killing it after timeout.
func (b *background) wait(timeout time.Duration) result {
	select {
	case <-b.done:
	case <-time.After(timeout):
		b.cmd.Process.Kill()
		<-b.done
		b.res.code, b.res.err = -1, fmt.Errorf("still running after %s", timeout)
	}
	return b.res
}

// containerIP is a container's address on the pod network, from `ps`.
func (s *session) containerIP(ctx context.Context, name string) (string, error) {
	r := s.run(ctx, time.Minute, "ps", "--format", "json")
	if r.code != 0 {
		return "", fmt.Errorf("ps: %s", r)
	}
	var entries []struct{ Name, IP string }
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		return "", fmt.Errorf("ps --format json: %w", err)
	}
	for _, e := range entries {
		if e.Name == name && e.IP != "" {
			return e.IP, nil
		}
	}
	return "", fmt.Errorf("ps shows no address for %s", name)
}
