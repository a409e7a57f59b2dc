package pipeline

import (
	"sync/atomic"
	"time"

	"github.com/eddy-stream/eddy/pipeline/clock"

	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/storage/savepoint"
	"github.com/eddy-stream/eddy/storage/state"
)

// JobSpec describes a job. The daemon builds it from the configuration; the
// pipeline package knows nothing of YAML.
type JobSpec struct {
	Name           string // appliance id; part of every result id
	Parallelism    int
	MaxParallelism int
	Sources        []SourceSpec
	Stages         []StageSpec
	Sinks          []SinkSpec
	State          StateSpec
	// ChannelCapacity is the number of batches a channel between tasks holds
	// before the sender blocks (default 16). BatchSize is the number of
	// readings per batch (default 512).
	ChannelCapacity int
	BatchSize       int
	// BatchCost is an artificial cost every keyed subtask pays per batch it
	// takes in, for benchmarks and tests of back-pressure only (0: none).
	BatchCost time.Duration
	// batchHook (tests) is called by a keyed subtask after each batch it
	// takes in from its inputs, with the subtask's name; it may block.
	batchHook func(task string)
	// MaxMessageSize: larger payloads are dead-lettered (default 1 MiB).
	MaxMessageSize int
	Checkpointing  CheckpointOptions
	// FS is what the job writes its task state files through (default
	// fileutil.OSFS{}); the checkpoint store, RocksDB and full snapshots
	// have their own.
	FS fileutil.FS
	// Checkpoints is the local checkpoint store; nil disables checkpoints.
	Checkpoints *checkpoint.Store
	// Restore is the checkpoint to start from; nil starts empty.
	Restore *checkpoint.Metadata
	// RestoreVerified delivers the result of the full (SST checksum)
	// verification of Restore, which runs while the job already processes.
	// No checkpoint is triggered before it reports success; a failure ends
	// the job with *ErrCorruptRestore. Nil: nothing to wait for.
	RestoreVerified <-chan error
	// AllowNonRestoredState lets a restore drop the state of stages the
	// configuration no longer has instead of refusing it (Flink's
	// allowNonRestoredState).
	AllowNonRestoredState bool
	// RestoreSource says where Restore came from: local, remote or savepoint.
	RestoreSource string
	// FromSavepoint, when set, says Restore is the savepoint there: it is
	// restored by key-group ranges at any parallelism, a keyed stage it
	// does not hold starts empty.
	FromSavepoint *SavepointRestore
	// Savepoints is where TriggerSavepoint writes; nil: no savepoints.
	Savepoints *savepoint.Store
	// ProtectCheckpoint, if set, keeps a completed checkpoint from being
	// pruned (the uploader may still be sending it).
	ProtectCheckpoint func(id int64) bool
	// OnSpoolFull, if set, is called with the sinks whose spool is full
	// whenever that changes (nil or empty: none is).
	OnSpoolFull func(full []string)
	// OnNoSpace, if set, is called on the coordinator's goroutine when
	// checkpoint id failed for lack of space with err (the daemon gives it
	// the disk reserve and triggers another). It must not block.
	OnNoSpace func(id int64, err error)
	// OnCheckpoint, if set, is called after checkpoint N is committed and
	// its staged output handed to the sinks (the uploader hooks in here).
	OnCheckpoint func(md *checkpoint.Metadata)
	// Clock is the box's clock (nil: the system's): idle_advance reads it.
	Clock clock.Clock
	// LostLogs names the sources whose ingest log was lost after Restore
	// was taken: the data dir was wiped or replaced and Restore came from
	// remote storage, so the log Restore's offsets point into is gone and
	// the one in SourceSpec.Log is a new one. Such a source starts at its
	// log's first offset instead of failing on an offset beyond the log's
	// end; what the old log held past Restore's offset cannot be replayed.
	// Job.LostLogs reports it.
	LostLogs map[string]bool

	// readLimits (tests) stops source subtasks, by sourceKey, at an
	// offset; a test may raise it while the job runs.
	readLimits map[string]*atomic.Uint64
}

// LostLog is what a source could not replay because its ingest log was
// lost (JobSpec.LostLogs).
type LostLog struct {
	Source string `json:"source"`
	// Checkpoint is the restored checkpoint; the old log's messages from
	// CheckpointOffset on (received after it was taken) are lost.
	Checkpoint       int64  `json:"checkpoint"`
	CheckpointOffset uint64 `json:"checkpoint_offset"`
	// CheckpointTime is when that checkpoint completed (Unix ms): the
	// messages lost were received between it and the loss of the disk.
	CheckpointTime int64 `json:"checkpoint_time"`
	// ResumedAt is the offset of the new log the source started at.
	ResumedAt uint64 `json:"resumed_at"`
}

// CheckpointOptions mirror Flink's execution.checkpointing.* options.
type CheckpointOptions struct {
	Interval          time.Duration // 0: no periodic checkpoints
	Mode              string        // exactly_once | at_least_once
	Timeout           time.Duration
	MinPause          time.Duration
	MaxConcurrent     int
	TolerableFailures int
	NumRetained       int
	Incremental       bool
	Compression       string // none | snappy (full snapshots only)
	LocalRecovery     bool
	History           int
	// Unaligned: barriers overtake the batches queued in the channels
	// between tasks; what they overtake is stored with the checkpoint as
	// channel state (docs/checkpoint-format.md) and processed first on
	// restore. Exactly-once only.
	Unaligned bool
	// AlignedTimeout, with Unaligned: a keyed task starts aligning and
	// switches to unaligned once this long has passed since the trigger
	// (0: unaligned from the start).
	AlignedTimeout time.Duration
}

// exactlyOnce reports whether sinks stage output until checkpoints complete.
func (s *JobSpec) exactlyOnce() bool {
	return s.Checkpoints != nil && s.Checkpointing.Mode != "at_least_once"
}

// SourceSpec is one ingest log and how to read its messages.
type SourceSpec struct {
	Name string
	// Parallelism is the number of source subtasks parsing this log; subtask
	// i handles the messages whose offset is i mod Parallelism (default 1).
	// More than one uses more cores for parsing; readings of one key may
	// then reach their window in another order than they arrived.
	Parallelism int
	Log         *ingestlog.Log
	TopicFields []string // field name per topic level, "" to ignore
	EventTime   EventTimeSpec
	// Receiving, if set, reports whether the source is taking messages
	// (connected to its broker, intake not paused). Idle advance happens
	// only while it does: a source cut off from its broker is not quiet,
	// the broker holds its readings.
	Receiving func() bool
}

// EventTimeSpec says where a reading's event time comes from. An empty Field
// means ingestion time: the receive timestamp stored in the ingest log,
// which replays identically after a crash.
type EventTimeSpec struct {
	Field             string
	Format            string // auto | rfc3339 | epoch_ms | epoch_s
	MaxOutOfOrderness time.Duration
	// IdleTimeout marks the source idle after this long without messages,
	// so it stops holding back the watermark of tasks it feeds together
	// with other sources (Flink's withIdleness). 0: never idle.
	IdleTimeout time.Duration
	// IdleAdvance: when every input of a keyed stage has been idle for
	// IdleTimeout, its watermark advances with the box's clock minus
	// MaxOutOfOrderness, so the last window of a silent device fires.
	IdleAdvance bool
	// MaxFuture: a reading whose event time is further ahead of the time
	// eddy received it (its ingestion timestamp, the box's clock) is a dead
	// letter and never moves the watermark. 0: no limit.
	MaxFuture time.Duration
}

// StageSpec is one stage: exactly one of Filter, Map, or a keyed window
// (KeyBy + Window + Aggregates).
type StageSpec struct {
	Name string
	// UID names the stage's state across configuration changes (see
	// StateUID); "" means Name.
	UID    string
	From   string // source or earlier stage; "" = previous stage, or every source for the first
	Filter string
	Map    map[string]string
	KeyBy  []string
	Window *WindowSpec
	// Aggregates maps an output field to "fn(field)" or "count()".
	Aggregates map[string]string
}

// Keyed reports whether the stage is a keyed window stage.
func (s *StageSpec) Keyed() bool { return len(s.KeyBy) > 0 }

// WindowSpec is a window assigner: tumbling(Size), sliding(Size, Slide) or
// session(Gap), with Flink's allowed lateness.
type WindowSpec struct {
	Type            string
	Size            time.Duration
	Slide           time.Duration
	Gap             time.Duration
	AllowedLateness time.Duration
}

// SinkSpec binds a Sink to the stage it reads, or to dead letters.
type SinkSpec struct {
	Name        string
	From        string
	DeadLetters bool
	// Topic is the MQTT topic template ("results/{site}/{device}"); empty
	// for sinks that have no topic.
	Topic string
	Sink  sink.Sink
	// Spool, in exactly-once mode, keeps the sink's output of completed
	// checkpoints on disk until the sink has it; nil: in memory, in every
	// checkpoint (tests).
	Spool *SpoolSpec
}

// StateSpec configures keyed state.
type StateSpec struct {
	Dir               string // state/<stage>-<i>/ are created under it
	Memory            *state.Memory
	ColumnFamilies    map[string]state.CFOptions
	MaxBackgroundJobs int
	Timers            string // rocksdb | heap
	// WriteCacheEntries bounds the write-back cache of open windows per
	// subtask; beyond it dirty entries are written to RocksDB and half the
	// cache is evicted.
	WriteCacheEntries int
}

func (s *JobSpec) withDefaults() {
	if s.FS == nil {
		s.FS = fileutil.OSFS{}
	}
	if s.ChannelCapacity <= 0 {
		s.ChannelCapacity = 16
	}
	if s.BatchSize <= 0 {
		s.BatchSize = 512
	}
	if s.MaxMessageSize <= 0 {
		s.MaxMessageSize = 1 << 20
	}
	if s.MaxParallelism <= 0 {
		s.MaxParallelism = 128
	}
	if s.Parallelism <= 0 {
		s.Parallelism = 1
	}
	if s.State.WriteCacheEntries <= 0 {
		s.State.WriteCacheEntries = 100_000
	}
	if s.State.Timers == "" {
		s.State.Timers = "rocksdb"
	}
	c := &s.Checkpointing
	if c.Mode == "" {
		c.Mode = "exactly_once"
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 1
	}
	if c.NumRetained <= 0 {
		c.NumRetained = 1
	}
	if c.History <= 0 {
		c.History = 10
	}
}
