package spool

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncFSOf returns the function that syncs the file system holding f
// (syncfs(2): its data and metadata, the journal committed, the disk's
// cache flushed), which Linux 5.8 and later fail with the write-back
// errors since the last call.
func syncFSOf(f *os.File) func() error {
	return func() error {
		rc, err := f.SyscallConn()
		if err != nil {
			return fmt.Errorf("syncfs: %w", err)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
			return fmt.Errorf("syncfs: %w", err)
		}
		if serr != nil {
			return fmt.Errorf("syncfs: %w", serr)
		}
		return nil
	}
}
