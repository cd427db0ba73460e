package s3test

import "syscall"

// sysProcAttr has versitygw killed when the test process dies, so that a
// test killed by a timeout or kill -9 leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
