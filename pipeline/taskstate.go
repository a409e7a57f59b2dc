package pipeline

import (
	"github.com/eddy-stream/eddy/pipeline/sink"
)

// taskSnapshot is the non-keyed state of a task in a checkpoint, stored as
// the task state file (checkpoint.WriteTaskState) next to its RocksDB files.
type taskSnapshot struct {
	Watermark       int64                    `json:"watermark"`
	InputWatermarks []int64                  `json:"input_watermarks,omitempty"`
	Offset          uint64                   `json:"offset,omitempty"`
	MaxTimestamp    int64                    `json:"max_timestamp,omitempty"`
	Staged          []stagedState            `json:"staged,omitempty"`
	HeapTimers      []byte                   `json:"heap_timers,omitempty"`
	heapParts       [][]byte                 // after a rescale: the heap timers of every overlapping old subtask
	olds            map[string]*taskSnapshot // after a rescale: the overlapping old subtasks' own, by task name
}

type stagedState struct {
	Sink   string       `json:"sink"`
	Epochs []sink.Epoch `json:"epochs"`
}
