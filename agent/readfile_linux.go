package agent

import (
	"context"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// maxReadFileBytes bounds ReadFile's answer: it serves termination messages
// (the kubelet reads at most 4 KiB of one), not file transfer.
const maxReadFileBytes = 64 << 10

// ReadFile returns the end of a regular file in a container's root. The
// container's processes may have exited: its root stays mounted until the
// container is created again or deleted.
func (s *Server) ReadFile(ctx context.Context, req *api.ReadFileRequest) (*api.ReadFileResponse, error) {
	max := req.GetMaxBytes()
	if max <= 0 || max > maxReadFileBytes {
		return nil, fmt.Errorf("read file: max_bytes %d must be 1-%d: %w", max, maxReadFileBytes, ErrInvalidArgument)
	}
	c, err := s.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK: a FIFO at the path must not hang the call; only regular
	// files are read.
	f, err := openInRoot(c.rootfs, req.GetPath(), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s in container %s: %w", req.GetPath(), c.id, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s in container %s: %w", req.GetPath(), c.id, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s in container %s: not a regular file: %w", req.GetPath(), c.id, ErrInvalidArgument)
	}
	resp := &api.ReadFileResponse{}
	if st.Size() > max {
		resp.Truncated = true
		if _, err := f.Seek(st.Size()-max, io.SeekStart); err != nil {
			return nil, fmt.Errorf("seek %s in container %s: %w", req.GetPath(), c.id, err)
		}
	}
	resp.Data, err = io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return nil, fmt.Errorf("read %s in container %s: %w", req.GetPath(), c.id, err)
	}
	return resp, nil
}
