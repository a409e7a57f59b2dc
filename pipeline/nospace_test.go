package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"
)

func TestNoSpace(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"wrapped ENOSPC", fmt.Errorf("commit _metadata: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), true},
		{"RocksDB status", errors.New("state: create checkpoint x: IO error: No space left on device: While appending to file: 000011.sst: No space left on device"), true},
		{"EIO", fmt.Errorf("write: %w", syscall.EIO), false},
		{"timeout", errors.New("checkpoint expired before completing (timeout 10m0s)"), false},
	} {
		if got := noSpace(tc.err); got != tc.want {
			t.Errorf("%s: noSpace = %v, want %v", tc.name, got, tc.want)
		}
	}
}
