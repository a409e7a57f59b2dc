package checkpoint

import (
	"errors"
	"fmt"
)

var (
	// ErrExists is returned by Begin and Commit for a checkpoint that is
	// already completed (its _metadata exists).
	ErrExists = errors.New("checkpoint: already completed")

	// ErrUnsupportedVersion is returned for a _metadata or task state
	// file whose format version this eddy cannot read, typically one
	// written by a newer eddy. It is not corruption: Latest stops with it
	// rather than quarantine the checkpoint and restore an older one.
	ErrUnsupportedVersion = errors.New("checkpoint: unsupported format version")

	// ErrInvalidMetadata is returned by Commit for metadata that fails
	// Validate, and by Commit when the checkpoint directory does not match
	// the metadata.
	ErrInvalidMetadata = errors.New("checkpoint: invalid metadata")
)

// CorruptError says that a file of a checkpoint is damaged: truncated,
// changed, missing, or not in the expected format. Offset is the byte
// offset where the damage was detected, -1 when no single offset applies
// (a checksum over the whole file, a missing file).
type CorruptError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("checkpoint: corrupt %s: %s", e.Path, e.Reason)
	}
	return fmt.Sprintf("checkpoint: corrupt %s at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// IsCorrupt reports whether err is or wraps a *CorruptError.
func IsCorrupt(err error) bool {
	var ce *CorruptError
	return errors.As(err, &ce)
}
