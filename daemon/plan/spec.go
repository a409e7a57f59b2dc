package plan

import (
	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/pipeline/sink"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/storage/state"
)

// Resources are what a job built from a configuration runs on: the opened
// ingest logs and sinks (by name), the state memory, the checkpoint store
// (nil: checkpointing off) and where the working state lives.
type Resources struct {
	StateDir  string
	Memory    *state.Memory
	Store     *checkpoint.Store
	FS        fileutil.FS
	Logs      map[string]*ingestlog.Log
	Sinks     map[string]sink.Sink
	Receiving func(source string) func() bool // nil: sources are always receiving
}

// JobSpec translates configuration c into a pipeline.JobSpec on r. The
// daemon and the planner build their jobs with it, so the planner measures
// the pipeline the daemon runs.
func JobSpec(c *config.Config, r Resources) pipeline.JobSpec {
	spec := pipeline.JobSpec{
		Name: c.ApplianceID, Parallelism: c.Pipeline.EffectiveParallelism(), MaxParallelism: c.Pipeline.MaxParallelism,
		FS: r.FS,
		State: pipeline.StateSpec{
			Dir: r.StateDir, Memory: r.Memory, Timers: c.State.Timers,
			WriteCacheEntries: c.State.WriteCacheEntries, MaxBackgroundJobs: c.State.MaxBackgroundJobs,
			ColumnFamilies: map[string]state.CFOptions{},
		},
		Checkpointing: pipeline.CheckpointOptions{
			Interval: c.Checkpointing.Interval, Mode: c.Checkpointing.Mode, Timeout: c.Checkpointing.Timeout,
			MinPause: c.Checkpointing.MinPause, MaxConcurrent: c.Checkpointing.MaxConcurrent,
			TolerableFailures: c.Checkpointing.TolerableFailures, NumRetained: c.Checkpointing.NumRetained,
			Incremental: c.Checkpointing.Incremental, Compression: c.Checkpointing.Compression,
			LocalRecovery: c.Checkpointing.LocalRecovery, History: c.Checkpointing.History,
			Unaligned: c.Checkpointing.Unaligned, AlignedTimeout: c.Checkpointing.AlignedTimeout,
		},
		Checkpoints: r.Store,
	}
	for name, cf := range c.State.ColumnFamilies {
		spec.State.ColumnFamilies[name] = state.CFOptions{
			WriteBufferSize: int64(cf.WriteBufferSize), MaxWriteBufferNumber: cf.MaxWriteBufferNumber,
			ArenaBlockSize: int64(cf.ArenaBlockSize), Compression: cf.Compression,
		}
	}
	for _, s := range c.Sources {
		ss := pipeline.SourceSpec{
			Name: s.Name, Parallelism: s.EffectiveParallelism(), Log: r.Logs[s.Name], TopicFields: s.TopicFields,
			EventTime: pipeline.EventTimeSpec{
				Field: s.EventTime.Field, Format: s.EventTime.Format, MaxOutOfOrderness: s.EventTime.MaxOutOfOrderness,
				IdleTimeout: s.EventTime.IdleTimeout, IdleAdvance: s.EventTime.IdleAdvance, MaxFuture: s.EventTime.MaxFuture,
			},
		}
		if r.Receiving != nil {
			ss.Receiving = r.Receiving(s.Name)
		}
		spec.Sources = append(spec.Sources, ss)
	}
	spec.Stages = StageSpecs(c)
	for _, s := range c.Sinks {
		ss := pipeline.SinkSpec{Name: s.Name, From: s.From, DeadLetters: s.DeadLetters, Sink: r.Sinks[s.Name]}
		if s.MQTT != nil {
			ss.Topic = s.MQTT.Topic
		}
		spec.Sinks = append(spec.Sinks, ss)
	}
	return spec
}

// StageSpecs translates the stages of configuration c.
func StageSpecs(c *config.Config) []pipeline.StageSpec {
	var out []pipeline.StageSpec
	for _, st := range c.Pipeline.Stages {
		ps := pipeline.StageSpec{Name: st.Name, UID: st.UID, From: st.From, Filter: st.Filter, Map: st.Map,
			KeyBy: st.KeyBy, Aggregates: st.Aggregate}
		if w := st.Window; w != nil {
			ps.Window = &pipeline.WindowSpec{Type: w.Type, Size: w.Size, Slide: w.Slide, Gap: w.Gap, AllowedLateness: w.AllowedLateness}
		}
		out = append(out, ps)
	}
	return out
}
