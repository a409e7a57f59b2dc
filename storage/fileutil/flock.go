package fileutil

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrLocked is returned by Flock when another process holds the lock.
var ErrLocked = errors.New("fileutil: locked by another process")

// LockedError says who holds a lock Flock could not take.
type LockedError struct {
	Path string
	PID  int // 0 when the holder's PID could not be read
}

func (e *LockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is locked by another eddy (pid %d)", e.Path, e.PID)
	}
	return fmt.Sprintf("%s is locked by another eddy", e.Path)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is a held flock; Release drops it.
type Lock struct{ f *os.File }

// Flock takes an exclusive, non-blocking flock(2) on path (created if
// missing) and writes this process's PID into it. The kernel drops the
// lock when the process exits, however it exits, so a stale LOCK file
// never blocks a restart. When another process holds it, the error is a
// *LockedError naming that process's PID.
func Flock(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, &LockedError{Path: path, PID: pid}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock. It is safe to call more than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	return errors.Join(syscall.Flock(int(f.Fd()), syscall.LOCK_UN), f.Close())
}
