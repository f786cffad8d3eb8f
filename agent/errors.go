package agent

import (
	"context"
	"errors"
	"io/fs"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error classes of the agent. Handlers wrap them with what was being done;
// the gRPC boundary (grpcError) turns them into status codes, once.
var (
	ErrNotFound           = errors.New("not found")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrUnimplemented      = errors.New("not implemented")
	ErrUnavailable        = errors.New("unavailable")
)

// Errors of resolving a command inside a container; the server turns them
// into NotFound (the host's 127) and PermissionDenied (126).
var (
	ErrExecutableNotFound = errors.New("executable file not found in $PATH")
	ErrNotExecutable      = errors.New("permission denied")
	ErrIsDirectory        = errors.New("is a directory")
)

// ErrControllerUnavailable is returned when a limit needs a cgroup
// controller the kernel does not offer.
var ErrControllerUnavailable = errors.New("cgroup controller not available")

// grpcError maps an error to a gRPC status error.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrExecutableNotFound), errors.Is(err, ErrNotFound), errors.Is(err, fs.ErrNotExist):
		code = codes.NotFound
	case errors.Is(err, ErrNotExecutable), errors.Is(err, ErrIsDirectory), errors.Is(err, fs.ErrPermission):
		code = codes.PermissionDenied
	case errors.Is(err, ErrFailedPrecondition), errors.Is(err, ErrControllerUnavailable):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, ErrBadFilePath):
		code = codes.InvalidArgument
	case errors.Is(err, ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, ErrUnimplemented):
		code = codes.Unimplemented
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}
