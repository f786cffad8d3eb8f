package agent_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/client"
)

// TestReadFileAfterExit: a file the container wrote (here to /dev, its own
// tmpfs, where termination messages go) is read after the process exited,
// from its end, resolved inside the container's root.
func TestReadFileAfterExit(t *testing.T) {
	e := newEnv(t)
	id := e.createContainer(t, "readfile")
	r := e.run(t, id, client.ExecOptions{Args: sh("printf 'head-%s-tail' 0123456789 > /dev/termination-log; ln -s /dev/termination-log /msg; mkfifo /fifo; exit 2")})
	if r.exit.GetExitCode() != 2 {
		t.Fatalf("writer: %v %q %+v", r.err, r.stderr, r.exit)
	}
	ctx := ctxT(t)
	read := func(path string, max int64) (*api.ReadFileResponse, error) {
		return e.cl.ReadFile(ctx, &api.ReadFileRequest{ContainerId: id, Path: path, MaxBytes: max})
	}
	got, err := read("/dev/termination-log", 4096)
	if err != nil || string(got.GetData()) != "head-0123456789-tail" || got.GetTruncated() {
		t.Fatalf("whole file: %v %q", err, got.GetData())
	}
	got, err = read("/msg", 8) // a symlink, resolved inside the root
	if err != nil || string(got.GetData()) != "789-tail" || !got.GetTruncated() {
		t.Fatalf("last 8 bytes through a link: %v %q %v", err, got.GetData(), got.GetTruncated())
	}
	if _, err := read("/no/such/file", 10); status.Code(err) != codes.NotFound {
		t.Fatalf("missing file: %v, want NotFound", err)
	}
	if _, err := read("/fifo", 10); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "regular") {
		t.Fatalf("a FIFO: %v, want InvalidArgument without hanging", err)
	}
	if _, err := read("/dev/termination-log", 0); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("max_bytes 0: %v, want InvalidArgument", err)
	}
}
