//go:build !linux

package chdb

import "syscall"

func childSysProcAttr() *syscall.SysProcAttr { return nil }
