// Package procstat reads a process's CPU time and peak memory from /proc,
// for the benchmarks that report where the machine's time went.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPUSeconds is the user+system CPU time of process pid so far, or 0 when
// it cannot be read (the figures are diagnostics, not results).
func CPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces) start after
	// its closing ')'; utime and stime are fields 14 and 15 of the line.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // clock ticks, USER_HZ = 100 on Linux
}

// PeakRSSMiB is the peak resident set (VmHWM) of process pid in MiB, or 0
// when it cannot be read.
func PeakRSSMiB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// CPUTime is CPUSeconds as a Duration.
func CPUTime(pid int) time.Duration {
	return time.Duration(CPUSeconds(pid) * float64(time.Second))
}
