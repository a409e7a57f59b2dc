package pipeline

import "github.com/eddy-stream/eddy/storage/checkpoint"

// sourceResume is where one source subtask continues after a restore.
type sourceResume struct {
	from  uint64            // first offset to read
	done  func(uint64) bool // offsets an old subtask already read; nil: none
	maxTS int64
	// settle: the subtask may not record its position in a checkpoint
	// before its reader has reached this offset.
	settle uint64
}

// resumeSource maps the positions a checkpoint holds for a source (old[i]
// is old subtask i of len(old)) onto new subtask sub of n.
//
// The invariant of a source's positions P[0..w-1] in a checkpoint: message
// o of the ingest log is reflected in the checkpointed state iff
// o < P[o mod w]. Subtask i reads only the messages it owns (o mod w == i),
// in log order, so its reader offset is such a P[i].
//
// With the same parallelism each subtask continues at its own position.
// With another, a new subtask owns messages that several old subtasks
// owned, each read up to its own position. It starts at the lowest old
// position and skips message o iff o < old[o mod len(old)].Offset. Its
// reader offset p is then a valid position under the invariant only once
// no message at or beyond p is skipped, i.e. once p >= max old offset; before
// that, recording p would make the next restore read the skipped messages
// again. So the subtask holds back barriers until its reader has passed
// settle (the replay of what is already in the log, never new input).
func resumeSource(old []checkpoint.SourceState, sub, n uint64) sourceResume {
	if uint64(len(old)) == n {
		return sourceResume{from: old[sub].Offset, maxTS: old[sub].MaxTimestamp}
	}
	r := sourceResume{from: old[0].Offset, maxTS: old[0].MaxTimestamp}
	offs := make([]uint64, len(old))
	for i, st := range old {
		offs[i] = st.Offset
		r.from, r.maxTS, r.settle = min(r.from, st.Offset), min(r.maxTS, st.MaxTimestamp), max(r.settle, st.Offset)
	}
	if r.from == r.settle {
		return sourceResume{from: r.from, maxTS: r.maxTS} // nothing to skip
	}
	m := uint64(len(offs))
	r.done = func(o uint64) bool { return o < offs[o%m] }
	return r
}
