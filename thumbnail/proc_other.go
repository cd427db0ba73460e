//go:build !linux

package thumbnail

import "syscall"

// procAttr puts ffmpeg in a process group of its own (killed as a group).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
