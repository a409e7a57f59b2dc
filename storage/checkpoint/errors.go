package checkpoint

import "errors"

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

// Damage to a checkpoint file (_metadata, _task, or a file that fails
// Verify) is a *fileutil.CorruptionError naming the file and, where one
// applies, the byte offset; fileutil.IsCorruption tells it from other
// errors.
