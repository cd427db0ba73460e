package main

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the child in its own process group (so the whole
// group can be signalled) and has the kernel kill it if hwload dies first.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends sig to the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error {
	return syscall.Kill(-pid, sig)
}
