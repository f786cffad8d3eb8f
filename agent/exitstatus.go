package agent

import (
	"syscall"

	"github.com/vk-applevm/vk-applevm/agent/api"
)

// exitStatusOf turns a wait status into the API's: 128+N for a signal,
// and an OOM kill when SIGKILL came while the container cgroup's oom_kill
// count grew (oomGrew is only asked then).
func exitStatusOf(ws syscall.WaitStatus, oomGrew func() bool) *api.ExitStatus {
	st := &api.ExitStatus{}
	switch {
	case ws.Exited():
		st.ExitCode = int32(ws.ExitStatus())
	case ws.Signaled():
		st.Signal = int32(ws.Signal())
		st.ExitCode = 128 + st.Signal
		st.OomKilled = ws.Signal() == syscall.SIGKILL && oomGrew()
	}
	return st
}
