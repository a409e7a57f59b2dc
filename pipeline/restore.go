package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/snapshot"
	"github.com/eddy-stream/eddy/storage/state"
)

// oldSourcePositions returns the positions a checkpoint holds for a source,
// indexed by old subtask.
func oldSourcePositions(md *checkpoint.Metadata, name string) []checkpoint.SourceState {
	if st, ok := md.Sources[name]; ok {
		return []checkpoint.SourceState{st}
	}
	var out []checkpoint.SourceState
	for i := 0; ; i++ {
		st, ok := md.Sources[sourceKey(name, i, 2)]
		if !ok {
			return out
		}
		out = append(out, st)
	}
}

// restoreSource positions a source subtask from the checkpoint's positions
// of the source (see resumeSource for the invariant).
func (j *Job) restoreSource(t *sourceTask, old []checkpoint.SourceState, name string) error {
	md := j.spec.Restore
	rs := resumeSource(old, t.sub, t.of)
	t.from, t.maxTS, t.done = rs.from, rs.maxTS, rs.done
	// Every offset below the log's end at restore was read by an old
	// subtask or is read by this one before its next checkpoint.
	t.settle = min(rs.settle, t.spec.Log.NextOffset())
	if uint64(len(old)) == t.of {
		if snap := j.restored[name]; snap != nil {
			t.wm = snap.Watermark
		}
	} else if t.maxTS != minWatermark {
		t.wm = t.maxTS - t.ooo - 1
	}
	if j.spec.LostLogs[t.spec.Name] {
		j.resumeLostLog(t)
		return nil
	}
	if first := t.spec.Log.FirstOffset(); t.from < first {
		return fmt.Errorf("pipeline: source %s: checkpoint %d starts at ingest-log offset %d but the log begins at %d",
			t.spec.Name, md.ID, t.from, first)
	}
	return nil
}

// checkRestore refuses a checkpoint the job cannot continue from and loads
// the non-keyed state of every task.
func (j *Job) checkRestore() error {
	md := j.spec.Restore
	if md == nil {
		return nil
	}
	if md.MaxParallelism != j.spec.MaxParallelism {
		return fmt.Errorf("pipeline: checkpoint %d was taken with max_parallelism %d, the configuration says %d; "+
			"max_parallelism is fixed for the life of the state", md.ID, md.MaxParallelism, j.spec.MaxParallelism)
	}
	if err := j.checkSchemas(); err != nil {
		return err
	}
	j.confirmed = j.confirmedSinks(md.ID)
	old := map[string]*taskSnapshot{}
	for name := range md.Tasks {
		data, err := checkpoint.ReadTaskStateFS(j.spec.FS, filepath.Join(j.restoreTaskDir(name), checkpoint.TaskStateFile))
		if err != nil {
			return fmt.Errorf("pipeline: restore %s: %w", name, err)
		}
		snap := &taskSnapshot{}
		if err := json.Unmarshal(data, snap); err != nil {
			return fmt.Errorf("pipeline: restore %s: decode task state: %w", name, err)
		}
		old[name] = snap
	}
	if !j.rescaled() {
		j.renameRestored(old)
		j.restored = old
		return nil
	}
	j.log.Info("rescaling: restoring by key-group ranges", "checkpoint", md.ID,
		"from_parallelism", md.Parallelism, "to_parallelism", j.spec.Parallelism)
	for name, ts := range md.Tasks {
		if ts.Kind == checkpoint.KindNone {
			j.restored[name] = old[name] // sources do not depend on parallelism
		}
	}
	for i := range j.spec.Stages {
		s := &j.spec.Stages[i]
		was, ok := j.oldStage(s.Name)
		if !s.Keyed() || !ok {
			continue
		}
		for k := range j.spec.Parallelism {
			kgs := keygroup.RangeFor(k, j.spec.MaxParallelism, j.spec.Parallelism)
			j.restored[fmt.Sprintf("%s-%d", s.Name, k)] = j.rescaledState(old, was, k, kgs)
		}
	}
	return nil
}

// openState opens a subtask's working RocksDB: empty, hard-linked from a
// native checkpoint (task-local recovery, no copy), or loaded from a full
// snapshot.
func (j *Job) openState(name, stage string, kgs keygroup.Range, opts state.Options) (*state.DB, error) {
	md := j.spec.Restore
	if md == nil {
		return state.Open(opts)
	}
	was, ok := j.oldStage(stage)
	if !ok { // new in the configuration (checkSchemas)
		return state.Open(opts)
	}
	if j.rescaled() {
		return j.openRescaled(was, kgs, opts)
	}
	name = was + strings.TrimPrefix(name, stage) // <stage>-<i> under its name in the checkpoint
	ts, ok := md.Tasks[name]
	if !ok {
		return nil, fmt.Errorf("checkpoint %d has no state for %s", md.ID, name)
	}
	dir := j.restoreTaskDir(name)
	if ts.Kind != checkpoint.KindFull {
		return state.OpenFromCheckpoint(dir, opts.Dir, opts)
	}
	db, err := state.Open(opts)
	if err != nil {
		return nil, err
	}
	if _, err := snapshot.RestoreFS(j.spec.FS, filepath.Join(dir, fullSnapshotFile), db, kgs); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return db, nil
}

// confirmedSinks returns, per sink, the newest checkpoint <= upTo whose
// staged output that sink confirmed (chk-N/_published; a sink confirms in
// checkpoint order, so it has every older one too). A sink missing from
// the map confirmed none that is still retained: it gets everything the
// restored checkpoint holds staged for it again.
func (j *Job) confirmedSinks(upTo int64) map[string]int64 {
	out := map[string]int64{}
	if sp := j.spec.FromSavepoint; sp != nil {
		for _, n := range sp.Published {
			out[n] = upTo
		}
	}
	ids, err := j.spec.Checkpoints.Completed()
	if err != nil {
		j.log.Warn("cannot list checkpoints for their published markers; staged output will be published again", "err", err)
		return out
	}
	for _, id := range ids {
		if id > upTo && j.spec.FromSavepoint == nil {
			continue
		}
		p := j.spec.Checkpoints.PublishedSinks(id)
		for i := range j.spec.Sinks {
			if n := j.spec.Sinks[i].Name; p.Has(n) {
				// A later checkpoint of the same job confirmed the
				// savepoint's output too (sinks confirm in order).
				out[n] = max(out[n], min(id, upTo))
			}
		}
	}
	return out
}
