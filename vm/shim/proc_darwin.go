package shim

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// szomb is a zombie's p_stat (SZOMB in <sys/proc.h>).
const szomb = 5

// processStartTime returns the start time of pid in microseconds since the
// epoch, from sysctl kern.proc.pid (kinfo_proc.kp_proc.p_starttime). Zombies
// count as gone.
func processStartTime(pid int) (uint64, error) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil || int(kp.Proc.P_pid) != pid {
		// A missing pid yields an empty answer, which x/sys reports as EIO.
		return 0, fmt.Errorf("process %d: %w", pid, errProcessGone)
	}
	if kp.Proc.P_stat == szomb {
		return 0, fmt.Errorf("process %d is a zombie: %w", pid, errProcessGone)
	}
	tv := kp.Proc.P_starttime
	return uint64(tv.Sec)*1_000_000 + uint64(tv.Usec), nil
}
