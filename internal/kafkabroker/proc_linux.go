package kafkabroker

import "os/exec"

// bindToParent makes the kernel kill the broker JVM if this process dies
// without calling Close (a test binary killed by its timeout, a panic), so
// no orphaned broker keeps ports and memory on a CI machine. (Linux sends
// the signal when the forking OS thread exits; Go keeps its threads unless a
// goroutine exits while locked to one, which this package never does.)
//
// Disabled as a precaution: Linux sends Pdeathsig when the forking *thread*
// exits, not the process. In one drill run a broker started this way died
// mid-test at the same moment as a ClickHouse child; the ClickHouse death
// was later traced to libchdb terminating on a client reset (see
// chdb/relay.go), the broker's was not explained. Close (deferred in every
// caller) stops the broker.
func bindToParent(cmd *exec.Cmd) {}
