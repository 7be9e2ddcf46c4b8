//go:build !linux

package kafkabroker

import "os/exec"

// bindToParent has no portable equivalent of Linux's Pdeathsig: elsewhere an
// orphaned broker must be stopped by hand if this process dies without Close.
func bindToParent(*exec.Cmd) {}
