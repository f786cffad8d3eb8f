package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vk-applevm/vk-applevm/agent"
	"github.com/vk-applevm/vk-applevm/agent/api"
)

// A host that asks for Rosetta without sharing it (anything but vz on Apple
// silicon) gets FailedPrecondition naming the share, and the guest's
// binfmt_misc is left alone. The success path registers a handler that
// catches every x86-64 executable, so it is tested in agent/binfmt inside
// a user namespace of its own, not here on the test machine's kernel.
func TestSetupRosettaWithoutTheShare(t *testing.T) {
	procSys := t.TempDir()
	e := newEnv(t, func(c *agent.Config) { c.ProcSysDir = procSys })
	_, err := e.cl.Setup(ctxT(t), &api.SetupRequest{Rosetta: true})
	st, _ := status.FromError(err)
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), `virtio-fs tag "rosetta"`) {
		t.Fatalf("Setup(rosetta) without the share: %v, want FailedPrecondition naming the rosetta tag", err)
	}
	if _, err := os.Stat(filepath.Join(procSys, "fs", "binfmt_misc")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("binfmt_misc was touched although the share is missing (%v)", err)
	}
}
