package transcoder

import "syscall"

// procAttr puts ffmpeg in its own process group (killed as a group) and
// kills it if the server dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
