package fileutil

import (
	"errors"
	"fmt"
)

// CorruptionError says that a file is damaged: truncated, changed, or not
// in the format it should have. It is the one corruption error of every
// eddy store (ingest log segments, checkpoint files, snapshots), so that
// code deciding what to do with damage needs one errors.As.
//
// Offset is the byte offset in Path where the damage was detected, or -1
// when no single offset applies (a checksum over the whole file, a
// missing file). Reason says what is wrong; Err, if not nil, is the
// underlying cause and is what Unwrap returns.
type CorruptionError struct {
	Path   string
	Offset int64
	Reason string
	Err    error
}

func (e *CorruptionError) Error() string {
	why := e.Reason
	switch {
	case why == "" && e.Err != nil:
		why = e.Err.Error()
	case e.Err != nil:
		why += ": " + e.Err.Error()
	}
	if e.Offset < 0 {
		return fmt.Sprintf("corrupt file %s: %s", e.Path, why)
	}
	return fmt.Sprintf("corrupt file %s at byte %d: %s", e.Path, e.Offset, why)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// IsCorruption reports whether err is or wraps a *CorruptionError.
func IsCorruption(err error) bool {
	var ce *CorruptionError
	return errors.As(err, &ce)
}
