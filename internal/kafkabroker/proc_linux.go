package kafkabroker

import "os/exec"

// bindToParent makes the kernel kill the broker JVM if this process dies
// without calling Close (a test binary killed by its timeout, a panic), so
// no orphaned broker keeps ports and memory on a CI machine. (Linux sends
// the signal when the forking OS thread exits; Go keeps its threads unless a
// goroutine exits while locked to one, which this package never does.)
//
// Disabled: in a busy test process a broker started this way was killed
// together with a ClickHouse child started the same way, at the same
// instant, mid-test — consistent with the forking thread exiting. Close
// (deferred in every caller) stops the broker instead.
func bindToParent(cmd *exec.Cmd) {}
