package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/keygroup"
	"github.com/eddy-stream/eddy/storage/snapshot"
	"github.com/eddy-stream/eddy/storage/state"
)

// Restoring with another parallelism (Flink's rescaling): every subtask
// owns keygroup.RangeFor(i) and rebuilds its state from the old subtasks
// whose key groups overlap, since every RocksDB key starts with its key
// group. A native checkpoint is restored like RocksDBIncrementalRestore-
// Operation does: the old subtask with the largest overlap is hard-linked in
// as the base and clipped to the new range; the keys of the other
// overlapping old subtasks are copied in. A full snapshot is read by
// key-group range from each overlapping file.

type oldTask struct {
	name    string
	state   checkpoint.TaskState
	overlap keygroup.Range
}

func (j *Job) rescaled() bool {
	md := j.spec.Restore
	return md != nil && (md.Parallelism != j.spec.Parallelism || j.spec.FromSavepoint != nil)
}

// overlapping lists the old subtasks of stage whose key groups overlap kgs,
// largest overlap first.
func (j *Job) overlapping(stage string, kgs keygroup.Range) []oldTask {
	var out []oldTask
	for name, ts := range j.spec.Restore.Tasks {
		if ts.Stage != stage || ts.Kind == checkpoint.KindNone {
			continue
		}
		if ov, ok := kgs.Intersect(keygroup.Range{Start: ts.KeyGroupStart, End: ts.KeyGroupEnd}); ok {
			out = append(out, oldTask{name: name, state: ts, overlap: ov})
		}
	}
	slices.SortFunc(out, func(a, b oldTask) int {
		if d := b.overlap.Len() - a.overlap.Len(); d != 0 {
			return d
		}
		return a.state.Index - b.state.Index
	})
	return out
}

// rescaledState merges the non-keyed state of the old subtasks overlapping a
// new one: the lowest watermark, every heap timer (Restore keeps those in
// range), and the staged output of old subtask k at new subtask k mod p, so
// each is published once.
func (j *Job) rescaledState(old map[string]*taskSnapshot, stage string, index int, kgs keygroup.Range) *taskSnapshot {
	merged := &taskSnapshot{Watermark: minWatermark}
	first := true
	for _, ot := range j.overlapping(stage, kgs) {
		s := old[ot.name]
		if s == nil {
			continue
		}
		if first || s.Watermark < merged.Watermark {
			merged.Watermark = s.Watermark
		}
		first = false
		if merged.olds == nil {
			merged.olds = map[string]*taskSnapshot{}
		}
		merged.olds[ot.name] = s
		if len(s.HeapTimers) > 0 {
			merged.heapParts = append(merged.heapParts, s.HeapTimers)
		}
	}
	for name, ts := range j.spec.Restore.Tasks {
		if ts.Stage == stage && ts.Index%j.spec.Parallelism == index && old[name] != nil {
			merged.Staged = append(merged.Staged, old[name].Staged...)
		}
	}
	return merged
}

// openRescaled builds the working DB of a new subtask from the overlapping
// old ones.
func (j *Job) openRescaled(stage string, kgs keygroup.Range, opts state.Options) (db *state.DB, err error) {
	olds := j.overlapping(stage, kgs)
	if len(olds) == 0 {
		return state.Open(opts)
	}
	dir := func(ot oldTask) string { return j.restoreTaskDir(ot.name) }
	if olds[0].state.Kind == checkpoint.KindFull {
		if db, err = state.Open(opts); err != nil {
			return nil, err
		}
		for _, ot := range olds {
			if _, err := snapshot.RestoreFS(j.spec.FS, filepath.Join(dir(ot), fullSnapshotFile), db, ot.overlap); err != nil {
				return nil, errors.Join(err, db.Close())
			}
		}
		return db, nil
	}
	if db, err = state.OpenFromCheckpoint(dir(olds[0]), opts.Dir, opts); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, db.Close())
		}
	}()
	// Clip the base to the new range.
	if kgs.Start > 0 {
		if err := db.DeleteKeyGroupRange(keygroup.Range{Start: 0, End: kgs.Start - 1}); err != nil {
			return nil, err
		}
	}
	if last := uint16(j.spec.MaxParallelism - 1); kgs.End < last {
		if err := db.DeleteKeyGroupRange(keygroup.Range{Start: kgs.End + 1, End: last}); err != nil {
			return nil, err
		}
	}
	for _, ot := range olds[1:] {
		if err := j.copyKeyGroups(db, dir(ot), opts, ot.overlap); err != nil {
			return nil, fmt.Errorf("copy key groups %v of %s: %w", ot.overlap, ot.name, err)
		}
	}
	return db, nil
}

// copyKeyGroups copies the keys of r from an old native checkpoint into db,
// through a temporary hard-linked copy of the checkpoint.
func (j *Job) copyKeyGroups(db *state.DB, checkpointDir string, opts state.Options, r keygroup.Range) error {
	tmp := opts.Dir + ".rescale.tmp"
	os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	o := opts
	o.Dir = tmp
	src, err := state.OpenFromCheckpoint(checkpointDir, tmp, o)
	if err != nil {
		return err
	}
	defer src.Close()
	lo, hi := state.KeyGroupRangeBounds(r)
	b := db.NewBatch()
	defer b.Close()
	for _, cf := range src.ColumnFamilies() {
		dst := db.CF(cf.Name())
		if dst == nil {
			continue
		}
		it := src.NewIterator(cf, lo, hi)
		for ; it.Valid(); it.Next() {
			b.Put(dst, it.Key(), it.Value())
			if b.Size() >= 4<<20 {
				if err := db.Write(b); err != nil {
					it.Close()
					return err
				}
				b.Clear()
			}
		}
		err := it.Err()
		it.Close()
		if err != nil {
			return err
		}
	}
	if b.Len() > 0 {
		return db.Write(b)
	}
	return nil
}

// sourceTaskName names the task of subtask sub of a source with
// parallelism w: source-<name>, or source-<name>-<sub>.
func sourceTaskName(name string, sub, w int) string {
	return "source-" + strings.ReplaceAll(sourceKey(name, sub, w), "/", "-")
}

// restageSources hands the staged output of the old subtasks of every
// source whose parallelism changed (dead letters, and the output of sinks
// fed by stages chained to the source) to the new subtasks: old subtask k
// to new subtask k mod w, so that each is published once. The rest of a
// source task's state is not taken by name then: its position comes from
// the checkpoint's source offsets (restoreSource).
func (j *Job) restageSources() {
	md := j.spec.Restore
	if md == nil {
		return
	}
	for i := range j.spec.Sources {
		s := &j.spec.Sources[i]
		w, n := max(s.Parallelism, 1), len(oldSourcePositions(md, s.Name))
		if n == 0 || n == w {
			continue
		}
		olds := make([]*taskSnapshot, n)
		for k := range n {
			name := sourceTaskName(s.Name, k, n)
			olds[k] = j.restored[name]
			delete(j.restored, name)
		}
		for k, o := range olds {
			if o == nil || len(o.Staged) == 0 {
				continue
			}
			name := sourceTaskName(s.Name, k%w, w)
			if j.restored[name] == nil {
				j.restored[name] = &taskSnapshot{Watermark: minWatermark}
			}
			j.restored[name].Staged = append(j.restored[name].Staged, o.Staged...)
		}
	}
}
