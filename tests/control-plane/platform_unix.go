//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// muteStderr points file descriptor 2 at /dev/null, for the shutdown: the
// apiserver's etcd client and the controllers then log, on stderr, every
// request their cancellation cuts short. This program's own messages keep
// going to the original stderr.
func muteStderr() {
	saved, err := unix.Dup(2)
	if err != nil {
		return
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		unix.Close(saved)
		return
	}
	defer null.Close()
	if err := unix.Dup2(int(null.Fd()), 2); err != nil {
		unix.Close(saved)
		return
	}
	stderr = os.NewFile(uintptr(saved), "stderr")
}

// lockDataDir takes an exclusive lock on <dir>/lock for the life of the
// process, so that two control planes never share one etcd data dir (etcd
// would otherwise wait forever for its database file lock).
func lockDataDir(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("data dir %s is in use by another tether-control-plane", dir)
		}
		return err
	}
	// Deliberately kept open (and so locked) until the process exits.
	lockFile = f
	return nil
}

var lockFile *os.File
