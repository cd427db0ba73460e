//go:build !linux

package s3test

import "syscall"

// sysProcAttr is nil where the parent's death cannot kill the child: the
// test's cleanup stops the server.
func sysProcAttr() *syscall.SysProcAttr { return nil }
