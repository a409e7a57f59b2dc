package pipeline

import "time"

// resumeLostLog starts source subtask t, restored from a checkpoint whose
// ingest log was lost (JobSpec.LostLogs), at the first offset of the new
// log, and records and logs what cannot be replayed.
func (j *Job) resumeLostLog(t *sourceTask) {
	md := j.spec.Restore
	first := t.spec.Log.FirstOffset()
	t.from, t.done, t.settle = first, nil, 0
	if t.sub != 0 {
		return
	}
	var off uint64
	for i, st := range oldSourcePositions(md, t.spec.Name) {
		if i == 0 || st.Offset < off {
			off = st.Offset
		}
	}
	ll := LostLog{Source: t.spec.Name, Checkpoint: md.ID, CheckpointOffset: off,
		CheckpointTime: md.CompletedTimestamp, ResumedAt: first}
	j.lostLogs = append(j.lostLogs, ll)
	j.log.Error("ingest log lost with the data dir: messages received after the restored checkpoint cannot be replayed",
		"source", ll.Source, "checkpoint", ll.Checkpoint, "old_log_offset", ll.CheckpointOffset,
		"received_after", time.UnixMilli(ll.CheckpointTime).UTC().Format(time.RFC3339), "new_log_offset", ll.ResumedAt)
}

// LostLogs reports the sources that were restored onto a new ingest log
// (JobSpec.LostLogs) and what they could not replay.
func (j *Job) LostLogs() []LostLog { return append([]LostLog(nil), j.lostLogs...) }
