package container

import (
	"context"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// ReadFile returns at most the last max bytes of a file in the container's
// root filesystem; the container's processes may have exited. ErrNotFound
// when the file does not exist.
func (s *VM) ReadFile(ctx context.Context, path string, max int64) ([]byte, error) {
	ag, err := s.agentClient()
	if err != nil {
		return nil, err
	}
	resp, err := ag.ReadFile(ctx, &api.ReadFileRequest{ContainerId: s.id, Path: path, MaxBytes: max})
	if err != nil {
		return nil, s.agentErr(ctx, "read "+path, err)
	}
	return resp.GetData(), nil
}
