package chdb

import "syscall"

// The child dies with its parent, so a crashed test run leaves no server.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
