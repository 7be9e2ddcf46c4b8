package procstat

import (
	"os"
	"testing"
	"time"
)

// The figures of this very process: CPU time grows with work done, and the
// peak resident set is at least what a large allocation touched.
func TestOwnProcess(t *testing.T) {
	before := CPUSeconds(os.Getpid())
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	after := CPUSeconds(os.Getpid())
	if after <= before {
		t.Fatalf("CPU seconds %v then %v after busy work (%d)", before, after, x)
	}
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = 1
	}
	if rss := PeakRSSMiB(os.Getpid()); rss < 64 {
		t.Fatalf("peak RSS %.1f MiB after touching 64 MiB", rss)
	}
	if CPUSeconds(-1) != 0 || PeakRSSMiB(-1) != 0 {
		t.Fatal("a missing process must read as 0")
	}
}
