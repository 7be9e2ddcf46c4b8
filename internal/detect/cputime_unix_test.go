//go:build unix

package detect

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user + system) of the whole process, GC
// workers included: on a shared machine a steadier cost measure than wall
// time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
