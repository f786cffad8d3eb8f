package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/vk-applevm/vk-applevm/image/imagetest"
)

// freshImage pushes busybox plus a layer of 3 MiB no store has seen, so
// a pull downloads something of a size progress shows.
func freshImage(t *testing.T, name string) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	img := imagetest.AppendFiles(t, env.busyboxImg, imagetest.Regular("big", 0o644, string(data)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.reg.PushImage(ctx, name+":latest", img); err != nil {
		t.Fatal(err)
	}
	return env.registry + "/" + name + ":latest"
}

// TestPullProgressPlainLines: in a pipe, a pull prints one line when a
// layer starts and one when it is done; a second pull says the layers
// exist.
func TestPullProgressPlainLines(t *testing.T) {
	ref := freshImage(t, fmt.Sprintf("progress-plain-%d", time.Now().UnixNano()))
	r := vkav(t, "", "images", "pull", ref)
	if r.code != 0 {
		t.Fatalf("pull: %d %s", r.code, r.stderr)
	}
	for _, want := range []string{
		`(?m)^Pulling ` + regexp.QuoteMeta(ref) + `$`,
		`(?m)^[0-9a-f]{12}: Downloading \(3\.0 MiB\)$`,
		`(?m)^[0-9a-f]{12}: Pull complete \(3\.0 MiB\)$`,
		`(?m)^Pulled ` + regexp.QuoteMeta(ref) + `: sha256:[0-9a-f]{64} \([0-9.]+ MiB in `,
	} {
		if !regexp.MustCompile(want).MatchString(r.stderr) {
			t.Errorf("pull output lacks %s:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "\x1b") {
		t.Errorf("terminal escapes in a pipe: %q", r.stderr)
	}
	r = vkav(t, "", "images", "pull", ref)
	if n := strings.Count(r.stderr, ": Already exists"); r.code != 0 || n < 2 {
		t.Fatalf("second pull: %d, %d layers already there:\n%s", r.code, n, r.stderr)
	}
}

// TestPullProgressTerminal: on a terminal, each layer is one line redrawn
// in place with a bar.
func TestPullProgressTerminal(t *testing.T) {
	ref := freshImage(t, fmt.Sprintf("progress-tty-%d", time.Now().UnixNano()))
	cmd := vkavCommand("images", "pull", ref)
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out syncBuffer
	done := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(done) }()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pull on a terminal: %v\n%q", err, out.String())
	}
	<-done
	s := out.String()
	for _, want := range []string{`\x1b\[[0-9]+A`, `\x1b\[2K[0-9a-f]{12}: Pull complete 3\.0 MiB`, `Pulled ` + regexp.QuoteMeta(ref)} {
		if !regexp.MustCompile(want).MatchString(s) {
			t.Errorf("terminal output lacks %s: %q", want, s)
		}
	}
}
