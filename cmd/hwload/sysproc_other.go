//go:build !linux

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup is a no-op where hwload cannot set process groups portably.
func setProcessGroup(*exec.Cmd) {}

// signalGroup signals just the process.
func signalGroup(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Signal(sig)
}
