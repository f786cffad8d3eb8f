//go:build !linux

package localcluster

import "os/exec"

// dieWithCaller: only Linux has a parent-death signal; elsewhere the
// caller's own cleanup stops what it started.
func dieWithCaller(*exec.Cmd) {}

func startOnOwnThread(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
