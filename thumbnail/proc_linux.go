package thumbnail

import "syscall"

// procAttr puts ffmpeg in a process group of its own (killed as a group)
// and kills it if the server dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
