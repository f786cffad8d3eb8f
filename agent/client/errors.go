package client

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of a command that could not run; ExitCode gives the shell's codes.
var (
	ErrCommandNotFound      = errors.New("command not found")
	ErrCommandNotExecutable = errors.New("command not executable")
)

// notFoundText is the agent's message for a command missing from $PATH
// (agent.ErrExecutableNotFound); other NotFound errors name a container or
// process.
const notFoundText = "executable file not found in $PATH"

// MapProcessError turns CreateProcess/StartProcess errors about the command
// into ErrCommandNotFound or ErrCommandNotExecutable (keeping the agent's
// message); other errors pass through.
func MapProcessError(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	switch {
	case st.Code() == codes.NotFound && strings.Contains(st.Message(), notFoundText):
		return fmt.Errorf("%w: %s", ErrCommandNotFound, st.Message())
	case st.Code() == codes.PermissionDenied:
		return fmt.Errorf("%w: %s", ErrCommandNotExecutable, st.Message())
	}
	return err
}

// ExitCode returns the exit code a shell reports for err: 127 for a
// command not found, 126 for one that cannot be executed.
func ExitCode(err error) (int, bool) {
	switch {
	case errors.Is(err, ErrCommandNotFound):
		return 127, true
	case errors.Is(err, ErrCommandNotExecutable):
		return 126, true
	}
	return 0, false
}
