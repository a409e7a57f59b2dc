package daemon

import (
	"errors"

	"github.com/eddy-stream/eddy/pipeline"
)

// AllowNonRestoredState makes the restore drop the state of keyed stages the
// configuration no longer has instead of refusing it, as
// checkpointing.allow_non_restored_state: true does (eddy run
// --allow-non-restored-state). Call it before Run.
func (d *Daemon) AllowNonRestoredState() { d.allowNonRestored = true }

// IsStateIncompatible reports whether err is a refused restore: the
// checkpoint's state does not fit the configured pipeline
// (ExitStateIncompatible).
func IsStateIncompatible(err error) bool {
	var se *pipeline.IncompatibleStateError
	return errors.As(err, &se)
}
