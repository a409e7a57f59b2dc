package daemon

import (
	"fmt"
	"slices"
	"sync"

	"github.com/eddy-stream/eddy/pipeline"
)

// PauseSpoolFull is the intake-pause reason while the spool of some sink
// is full (sinks[].spool.max_size): the sources stop reading and the
// ingest logs refuse messages, so the broker holds them, until the sink
// drains its spool.
const PauseSpoolFull = "sink_spool_full"

// spoolState is which sinks have a full spool (set by the job through
// pipeline.JobSpec.OnSpoolFull).
type spoolState struct {
	mu   sync.Mutex
	full []string
}

// spoolSpec is the spool of sink name under the data dir.
func (d *Daemon) spoolSpec(name string, maxSize int64) *pipeline.SpoolSpec {
	return &pipeline.SpoolSpec{Dir: d.layout.Spool(name), MaxSize: maxSize}
}

// setSpoolFull pauses or resumes the intake of every source.
func (d *Daemon) setSpoolFull(full []string) {
	d.spool.mu.Lock()
	was := len(d.spool.full) > 0
	d.spool.full = slices.Clone(full)
	d.spool.mu.Unlock()
	if now := len(full) > 0; now != was {
		for _, l := range d.logs {
			if now {
				l.Pause(PauseSpoolFull)
			} else {
				l.Resume(PauseSpoolFull)
			}
		}
		if now {
			d.log.Warn("intake paused: a sink's spool is full; the broker holds new input until the sink drains it", "sinks", full)
		} else {
			d.log.Info("intake resumed: sink spools have room again")
		}
	}
	d.notify.statusNow()
}

// spoolPaused says which sinks' spools hold the intake, for intakePaused.
func (d *Daemon) spoolPaused() []string {
	d.spool.mu.Lock()
	defer d.spool.mu.Unlock()
	var parts []string
	for _, n := range d.spool.full {
		parts = append(parts, fmt.Sprintf("spool of sink %s is full (sinks[].spool.max_size)", n))
	}
	return parts
}
