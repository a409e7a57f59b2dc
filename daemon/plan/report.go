package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// Report is what `eddy plan` measured, as printed by --json, served by
// GET /api/v1/plan and kept in data_dir/plan/latest.json. Durations are
// seconds; -1 means never (no catch-up, an outage ridden out forever).
type Report struct {
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Input   string    `json:"input"` // ingest_log, file <path>, simulator
	Cores   int       `json:"cores"`

	Checkpointing struct {
		IntervalSeconds float64 `json:"interval_seconds"`
		MinPauseSeconds float64 `json:"min_pause_seconds"`
		Mode            string  `json:"mode"`
		Incremental     bool    `json:"incremental"`
		Completed       int64   `json:"completed"` // during the replay
		// What the plan's replays checkpointed at: the configured interval
		// and min_pause, capped at PlanCheckpointInterval and
		// PlanCheckpointMinPause so that several checkpoints complete in
		// a replay of a few seconds.
		PlanIntervalSeconds float64 `json:"plan_interval_seconds"`
		PlanMinPauseSeconds float64 `json:"plan_min_pause_seconds"`
	} `json:"checkpointing"`
	Max      Max `json:"max"`
	Recovery struct {
		Checkpoint            int64   `json:"checkpoint"`
		CheckpointBytes       int64   `json:"checkpoint_bytes"`
		RestoreSeconds        float64 `json:"restore_seconds"`
		Remote                string  `json:"remote"` // what was measured from upload.remote, or why not
		RemoteCheckpoint      int64   `json:"remote_checkpoint,omitempty"`
		RemoteBytes           int64   `json:"remote_bytes,omitempty"` // stored bytes read
		RemoteDownloadSeconds float64 `json:"remote_download_seconds,omitempty"`
		RemoteRestoreSeconds  float64 `json:"remote_restore_seconds,omitempty"`
		// RemoteCatchUpSeconds is the catch-up of a replacement box: the
		// download and restore, then the backlog as for catchup_seconds.
		RemoteCatchUpSeconds    float64 `json:"remote_catchup_seconds,omitempty"`
		ReplayReadings          int64   `json:"replay_readings"`
		ReplayReadingsPerSecond float64 `json:"replay_readings_per_second"`
	} `json:"recovery"`
	Live struct {
		Source            string  `json:"source"` // "" when unknown
		MessagesPerSecond float64 `json:"messages_per_second"`
		ReadingsPerSecond float64 `json:"readings_per_second"`
		BytesPerSecond    float64 `json:"bytes_per_second"`
	} `json:"live"`
	Headroom       float64 `json:"headroom"`        // max ÷ live; -1 without live input
	CatchUpSeconds float64 `json:"catchup_seconds"` // after a crash now
	IngestLog      struct {
		MaxSize        int64   `json:"max_size"`
		Used           int64   `json:"used"`
		RideOutSeconds float64 `json:"ride_out_seconds"`
	} `json:"ingest_log"`
	Disk struct {
		Free          int64   `json:"free"`
		FullInSeconds float64 `json:"full_in_seconds"`
	} `json:"disk"`
	// Spools: per sink (exactly-once mode), how long its spool holds the
	// output while the sink is down before intake pauses.
	Spools  []SpoolFigures `json:"spools,omitempty"`
	Skew    Skew           `json:"skew"`
	Windows Windows        `json:"windows"`
	Advice  []Advice       `json:"advice"`

	bytesPerMsg float64 // of the replayed input, with framing
}

// Max is the highest sustainable input: the replay flat out.
type Max struct {
	ReadingsPerSecond float64 `json:"readings_per_second"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	Readings          int64   `json:"readings"`
	Messages          int64   `json:"messages"`
	Seconds           float64 `json:"seconds"`
	// Bottleneck is the busiest task: the first not back-pressured one
	// after a back-pressured one (the sources when none is).
	Bottleneck           string     `json:"bottleneck"`
	UpstreamBackPressure float64    `json:"upstream_back_pressure"`
	Tasks                []TaskLoad `json:"tasks"`
}

// TaskLoad is one task during the replay.
type TaskLoad struct {
	Name         string  `json:"name"`
	Kind         string  `json:"kind"`
	RecordsIn    int64   `json:"records_in"`
	BackPressure float64 `json:"back_pressure"` // share of the replay's time
}

// Skew is how evenly the keyed work spreads.
type Skew struct {
	Stage           string  `json:"stage"`
	BusiestSubtask  string  `json:"busiest_subtask"`
	SubtaskShare    float64 `json:"subtask_share"`
	Subtasks        int     `json:"subtasks"`
	BusiestKeyGroup int     `json:"busiest_key_group"`
	KeyGroupShare   float64 `json:"key_group_share"` // of the results
	KeyGroups       int     `json:"key_groups"`      // key groups with results
	Parallelism     int     `json:"parallelism"`
	MaxParallelism  int     `json:"max_parallelism"`
	ScaleTarget     int     `json:"scale_target"` // cores × 4
	RoomToScale     bool    `json:"room_to_scale"`
	busiest         int64
}

// Windows are the bursts of window firings.
type Windows struct {
	Firings             int     `json:"firings"`
	ResultsPerFiring    float64 `json:"results_per_firing"`
	MaxResultsPerFiring int64   `json:"max_results_per_firing"`
	PeakOutputPerSecond float64 `json:"peak_output_per_second"`
	BurstSeconds        float64 `json:"burst_seconds"`
}

// SpoolFigures is one sink's spool (data_dir/spool/<sink>): its
// sinks[].spool.max_size, the bytes it holds now, the sink's output per
// reading in the replay and at the live input, and how long a sink outage
// it rides out at that rate.
type SpoolFigures struct {
	Sink                  string  `json:"sink"`
	MaxSize               int64   `json:"max_size"`
	Used                  int64   `json:"used"`
	OutputBytesPerReading float64 `json:"output_bytes_per_reading"`
	OutputBytesPerSecond  float64 `json:"output_bytes_per_second"`
	RideOutSeconds        float64 `json:"ride_out_seconds"`
}

// Advice is one figure, whether it is fine, and what to change if not.
type Advice struct {
	Figure string `json:"figure"`
	OK     bool   `json:"ok"`
	Change string `json:"change,omitempty"`
}

// derive computes the figures that follow from the measured ones and the
// advice.
func (r *Report) derive() {
	switch {
	case r.Max.Readings <= 0 || r.Max.Messages <= 0:
	case r.Live.MessagesPerSecond > 0:
		r.Live.ReadingsPerSecond = r.Live.MessagesPerSecond * float64(r.Max.Readings) / float64(r.Max.Messages)
	case r.Live.ReadingsPerSecond > 0:
		r.Live.MessagesPerSecond = r.Live.ReadingsPerSecond * float64(r.Max.Messages) / float64(r.Max.Readings)
		r.Live.BytesPerSecond = r.Live.MessagesPerSecond * r.bytesPerMsg
	}
	max, live := r.Max.ReadingsPerSecond, r.Live.ReadingsPerSecond
	r.Headroom = Finite(Headroom(max, live))
	r.CatchUpSeconds = Finite(CatchUp(r.Recovery.RestoreSeconds, r.Checkpointing.IntervalSeconds, max, live))
	if r.Recovery.RemoteCheckpoint > 0 {
		r.Recovery.RemoteCatchUpSeconds = Finite(CatchUp(r.Recovery.RemoteDownloadSeconds+r.Recovery.RemoteRestoreSeconds,
			r.Checkpointing.IntervalSeconds, max, live))
	}
	r.IngestLog.RideOutSeconds = Finite(RideOut(r.IngestLog.MaxSize, r.IngestLog.Used, r.Live.BytesPerSecond))
	r.Disk.FullInSeconds = Finite(DiskFull(r.Disk.Free, r.Live.BytesPerSecond))
	for i := range r.Spools {
		sp := &r.Spools[i]
		sp.OutputBytesPerSecond = sp.OutputBytesPerReading * live
		sp.RideOutSeconds = Finite(RideOut(sp.MaxSize, sp.Used, sp.OutputBytesPerSecond))
	}
	add := func(fig string, ok bool, change string) {
		a := Advice{Figure: fig, OK: ok}
		if !ok {
			a.Change = change
		}
		r.Advice = append(r.Advice, a)
	}
	if live > 0 {
		add("headroom", r.Headroom >= 2,
			"below 2× the live input: raise pipeline.parallelism (up to max_parallelism and the cores), give RocksDB more state.memory.managed, or relieve the bottleneck "+r.Max.Bottleneck)
		add("catch-up", r.CatchUpSeconds >= 0 && r.CatchUpSeconds < 300,
			"catching up after a crash takes over 5 minutes: shorten checkpointing.interval (less to replay), turn checkpointing.incremental on (faster restore), or raise the headroom")
		add("ingest log ride-out", r.IngestLog.RideOutSeconds < 0 || r.IngestLog.RideOutSeconds >= 3600,
			"the ingest log holds less than an hour of input: raise ingest_log.max_size (and the disk)")
		add("disk", r.Disk.FullInSeconds < 0 || r.Disk.FullInSeconds >= 86400,
			"the disk fills within a day of outage at this rate: a larger disk, or a smaller ingest_log.max_size so intake pauses first")
		for _, sp := range r.Spools {
			add("sink "+sp.Sink+" spool ride-out", sp.RideOutSeconds < 0 || sp.RideOutSeconds >= 3600,
				"the spool of sink "+sp.Sink+" holds less than an hour of its output: a sink outage pauses intake sooner; raise sinks[].spool.max_size (and the disk)")
		}
	}
	if r.Recovery.Checkpoint > 0 && r.Checkpointing.IntervalSeconds > 0 {
		add("restore", r.Recovery.RestoreSeconds < r.Checkpointing.IntervalSeconds,
			"restoring takes longer than a checkpoint interval: turn checkpointing.incremental on, or give RocksDB more state.memory.managed")
	}
	add("checkpoints during the replay", r.Checkpointing.IntervalSeconds <= 0 || r.Checkpointing.Completed > 0 || r.Max.Seconds < r.Checkpointing.PlanIntervalSeconds,
		"no checkpoint completed under full load: lengthen checkpointing.timeout or checkpointing.interval, set checkpointing.min_pause")
	add("subtask skew", r.Skew.Subtasks < 2 || r.Skew.SubtaskShare <= 1.5/float64(r.Skew.Subtasks),
		"one subtask takes more than 1.5× its share: the keys are skewed; key_by finer fields")
	add("max_parallelism", r.Skew.RoomToScale,
		fmt.Sprintf("max_parallelism %d is below cores×4 = %d: a new state with a higher pipeline.max_parallelism (it cannot change for the life of the state)", r.Skew.MaxParallelism, r.Skew.ScaleTarget))
	if r.Windows.Firings > 0 && max > 0 {
		add("window bursts", r.Windows.PeakOutputPerSecond < 10*max,
			"window firings emit bursts: make sure the sinks take peak_output_per_second, or stagger with smaller windows")
	}
}

// Path is where the latest plan is kept: data_dir/plan/latest.json.
func Path(dataDir string) string { return filepath.Join(dataDir, "plan", "latest.json") }

// Save writes r to Path(dataDir) atomically.
func Save(dataDir string, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := fileutil.CreateDirAll(filepath.Dir(Path(dataDir))); err != nil {
		return err
	}
	return fileutil.WriteFileAtomic(Path(dataDir), append(b, '\n'), 0o644)
}

// Load reads the latest plan; nil, nil if there is none.
func Load(dataDir string) (*Report, error) {
	b, err := os.ReadFile(Path(dataDir))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("plan: %s: %w", Path(dataDir), err)
	}
	return &r, nil
}

func secs(v float64) string {
	if v < 0 {
		return "never"
	}
	return (time.Duration(v * float64(time.Second))).Round(time.Millisecond).String()
}

// WriteTable prints r for people.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(f, a...)) }
	p("input", "%s", r.Input)
	p("max (checkpointing on)", "%.0f readings/s, %.0f msgs/s (%d readings in %s)", r.Max.ReadingsPerSecond,
		r.Max.MessagesPerSecond, r.Max.Readings, secs(r.Max.Seconds))
	p("bottleneck", "%s (upstream back-pressure %.0f%%)", r.Max.Bottleneck, 100*r.Max.UpstreamBackPressure)
	p("checkpoints", "every %s, %s, incremental %v: %d completed during the replay (which checkpointed every %s)",
		secs(r.Checkpointing.IntervalSeconds), r.Checkpointing.Mode, r.Checkpointing.Incremental, r.Checkpointing.Completed,
		secs(r.Checkpointing.PlanIntervalSeconds))
	p("restore (local)", "%s for checkpoint %d of %d bytes", secs(r.Recovery.RestoreSeconds), r.Recovery.Checkpoint, r.Recovery.CheckpointBytes)
	p("restore (remote)", "%s", r.Recovery.Remote)
	if r.Recovery.RemoteCheckpoint > 0 && r.Live.Source != "" {
		p("catch-up of a replacement box", "%s (from the remote)", secs(r.Recovery.RemoteCatchUpSeconds))
	}
	p("replay after restore", "%.0f readings/s (cold cache)", r.Recovery.ReplayReadingsPerSecond)
	if r.Live.Source == "" {
		p("live input", "unknown (no arrival times; give --live-rate)")
	} else {
		p("live input", "%.1f readings/s, %.1f msgs/s, %.0f B/s (%s)", r.Live.ReadingsPerSecond, r.Live.MessagesPerSecond,
			r.Live.BytesPerSecond, r.Live.Source)
		p("headroom", "%.1f×", r.Headroom)
		p("catch-up after a crash now", "%s", secs(r.CatchUpSeconds))
		p("ingest log rides out", "%s of outage (%d of %d bytes used)", secs(r.IngestLog.RideOutSeconds), r.IngestLog.Used, r.IngestLog.MaxSize)
		p("disk full in", "%s (%d bytes free)", secs(r.Disk.FullInSeconds), r.Disk.Free)
		for _, sp := range r.Spools {
			p("spool of sink "+sp.Sink+" rides out", "%s of sink outage (%d of %d bytes used, output %.0f B/s)",
				secs(sp.RideOutSeconds), sp.Used, sp.MaxSize, sp.OutputBytesPerSecond)
		}
	}
	p("skew", "busiest subtask %s %.0f%% of %d; busiest key group %d %.1f%% of %d", r.Skew.BusiestSubtask,
		100*r.Skew.SubtaskShare, r.Skew.Subtasks, r.Skew.BusiestKeyGroup, 100*r.Skew.KeyGroupShare, r.Skew.KeyGroups)
	p("max_parallelism", "%d (cores×4 = %d): room to scale %v", r.Skew.MaxParallelism, r.Skew.ScaleTarget, r.Skew.RoomToScale)
	p("window firings", "%d, %.0f results each (max %d), burst %s at up to %.0f results/s", r.Windows.Firings,
		r.Windows.ResultsPerFiring, r.Windows.MaxResultsPerFiring, secs(r.Windows.BurstSeconds), r.Windows.PeakOutputPerSecond)
	for _, a := range r.Advice {
		if !a.OK {
			p("! "+a.Figure, "%s", a.Change)
		}
	}
	return tw.Flush()
}
