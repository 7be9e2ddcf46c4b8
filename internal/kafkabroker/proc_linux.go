package kafkabroker

import (
	"os/exec"
	"syscall"
)

// bindToParent makes the kernel kill the broker JVM if this process dies
// without calling Close (a test binary killed by its timeout, a panic), so
// no orphaned broker keeps ports and memory on a CI machine. (Linux sends
// the signal when the forking OS thread exits; Go keeps its threads unless a
// goroutine exits while locked to one, which this package never does.)
func bindToParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
