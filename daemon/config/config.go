package config

import (
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Config is eddy's whole configuration. Field tags are the YAML keys; see
// docs/configuration.md for the reference.
type Config struct {
	// ApplianceID names this appliance; it is part of the remote layout and
	// of every result id, so it must not change for the life of the state.
	ApplianceID   string        `mapstructure:"appliance_id"`
	DataDir       string        `mapstructure:"data_dir"`
	MQTT          MQTT          `mapstructure:"mqtt"`
	Sources       []Source      `mapstructure:"sources"`
	Pipeline      Pipeline      `mapstructure:"pipeline"`
	Sinks         []Sink        `mapstructure:"sinks"`
	IngestLog     IngestLog     `mapstructure:"ingest_log"`
	Disk          Disk          `mapstructure:"disk"`
	State         State         `mapstructure:"state"`
	Checkpointing Checkpointing `mapstructure:"checkpointing"`
	Upload        Upload        `mapstructure:"upload"`
	HTTP          HTTP          `mapstructure:"http"`
	Log           Log           `mapstructure:"log"`
}

// MQTT is the default broker connection used by sources and MQTT sinks.
type MQTT struct {
	// Broker is a tcp://, ssl://, tls://, ws:// or wss:// URL, or the word
	// "embedded" to run a broker inside eddy on Embedded.Listen.
	Broker   string       `mapstructure:"broker"`
	Embedded EmbeddedMQTT `mapstructure:"embedded"`
	// ClientID defaults to "eddy-" + appliance_id (filled in by Derive).
	ClientID             string        `mapstructure:"client_id"`
	Username             string        `mapstructure:"username"`
	Password             string        `mapstructure:"password"`
	PasswordFile         string        `mapstructure:"password_file"`
	QoS                  int           `mapstructure:"qos"`
	CleanSession         bool          `mapstructure:"clean_session"`
	KeepAlive            time.Duration `mapstructure:"keep_alive"`
	ConnectTimeout       time.Duration `mapstructure:"connect_timeout"`
	ReconnectMaxInterval time.Duration `mapstructure:"reconnect_max_interval"`
	TLS                  TLS           `mapstructure:"tls"`
}

// IsEmbedded reports whether eddy runs its own broker.
func (m *MQTT) IsEmbedded() bool { return m.Broker == BrokerEmbedded }

// BrokerEmbedded is the mqtt.broker value that runs a broker inside eddy.
const BrokerEmbedded = "embedded"

// EmbeddedMQTT configures the embedded broker (mqtt.broker: embedded).
type EmbeddedMQTT struct {
	Listen string `mapstructure:"listen"`
}

// TLS configures the client side of an ssl://, tls:// or wss:// broker
// connection. CertFile and KeyFile go together (client certificate).
type TLS struct {
	CAFile             string `mapstructure:"ca_file"`
	CertFile           string `mapstructure:"cert_file"`
	KeyFile            string `mapstructure:"key_file"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
}

func (t TLS) isSet() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

// Source is one MQTT subscription feeding its own ingest log.
type Source struct {
	Name  string `mapstructure:"name"`
	Topic string `mapstructure:"topic"`
	// TopicFields names topic levels as record fields; "" ignores a level.
	// Either empty or one entry per level of Topic.
	TopicFields []string `mapstructure:"topic_fields"`
	// QoS overrides mqtt.qos; nil before Derive means "inherit".
	QoS *int `mapstructure:"qos"`
	// Parallelism is the number of source subtasks parsing this source's
	// ingest log (each takes the messages whose offset is its own modulo
	// the count); more than 1 spreads parsing over cores. 0 = number of
	// CPUs; see EffectiveParallelism.
	Parallelism int       `mapstructure:"parallelism"`
	Format      string    `mapstructure:"format"`
	EventTime   EventTime `mapstructure:"event_time"`
}

// EventTime says where a reading's event time comes from and how the
// source's watermark follows it.
type EventTime struct {
	// Field is the record field holding the event time; "" means ingestion
	// time (the receive timestamp kept in the ingest log).
	Field             string        `mapstructure:"field"`
	Format            string        `mapstructure:"format"` // auto | rfc3339 | epoch_ms | epoch_s
	MaxOutOfOrderness time.Duration `mapstructure:"max_out_of_orderness"`
	// IdleTimeout marks the source idle (not holding back the watermark)
	// after this long without input; 0 = never.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// IdleAdvance: when every input of a keyed stage has been idle for
	// IdleTimeout, its watermark advances with the box's clock minus
	// MaxOutOfOrderness, so the last window of a quiet device fires.
	IdleAdvance bool `mapstructure:"idle_advance"`
	// MaxFuture: a reading whose event time is further ahead of the time
	// eddy received it is a dead letter ("event time in the future") and
	// never moves the watermark; 0 = no limit.
	MaxFuture time.Duration `mapstructure:"max_future"`
}

// Pipeline is the parallelism and the ordered list of stages.
type Pipeline struct {
	// Parallelism is the number of subtasks per keyed stage; 0 = number of
	// CPUs (capped at MaxParallelism). See EffectiveParallelism.
	Parallelism int `mapstructure:"parallelism"`
	// MaxParallelism is the number of key groups; fixed for the life of the
	// state.
	MaxParallelism int     `mapstructure:"max_parallelism"`
	Stages         []Stage `mapstructure:"stages"`
}

// EffectiveParallelism resolves Parallelism 0 to the number of CPUs, capped
// at MaxParallelism.
func (p *Pipeline) EffectiveParallelism() int {
	n := p.Parallelism
	if n <= 0 {
		n = runtime.NumCPU()
	}
	if p.MaxParallelism > 0 && n > p.MaxParallelism {
		n = p.MaxParallelism
	}
	return n
}

// EffectiveParallelism resolves Parallelism 0 to the number of CPUs.
func (s *Source) EffectiveParallelism() int {
	if s.Parallelism <= 0 {
		return runtime.NumCPU()
	}
	return s.Parallelism
}

// Stage is exactly one of: a filter (Filter), a map (Map), or a keyed window
// (KeyBy + Window + Aggregate).
type Stage struct {
	Name string `mapstructure:"name"`
	// UID names a keyed stage's state across configuration changes
	// (Flink's operator uid): restores match state to stages by uid.
	// "" = the stage's name; set it to keep a renamed stage's state.
	UID string `mapstructure:"uid"`
	// From is a source name or an earlier stage; "" = the previous stage,
	// or every source for the first stage.
	From string `mapstructure:"from"`
	// Filter is an expr-lang boolean expression; records for which it is
	// false are dropped.
	Filter string `mapstructure:"filter"`
	// Map sets each output field to an expr-lang expression evaluated
	// against the input record.
	Map map[string]string `mapstructure:"map"`
	// KeyBy is one field name or a list of them.
	KeyBy  StringList `mapstructure:"key_by"`
	Window *Window    `mapstructure:"window"`
	// Aggregate maps an output name to count(), sum(f), min(f), max(f),
	// avg(f), first(f) or last(f); see lang.ParseAggregate.
	Aggregate map[string]string `mapstructure:"aggregate"`
}

// StageKind is what a stage does.
type StageKind string

// Stage kinds.
const (
	KindNone   StageKind = ""
	KindFilter StageKind = "filter"
	KindMap    StageKind = "map"
	KindWindow StageKind = "window"
)

// Kind reports what the stage does. A stage that mixes kinds (which
// Validate refuses) reports the first of window, filter, map it has.
func (s *Stage) Kind() StageKind {
	switch {
	case len(s.KeyBy) > 0 || s.Window != nil || len(s.Aggregate) > 0:
		return KindWindow
	case s.Filter != "":
		return KindFilter
	case len(s.Map) > 0:
		return KindMap
	}
	return KindNone
}

// StringList is a list of strings that may be written in YAML as a single
// string: key_by: device is key_by: [device].
type StringList []string

// Window is a window assigner with Flink's allowed lateness:
// tumbling(Size), sliding(Size, Slide) or session(Gap).
type Window struct {
	Type            string        `mapstructure:"type"` // tumbling | sliding | session
	Size            time.Duration `mapstructure:"size"`
	Slide           time.Duration `mapstructure:"slide"`
	Gap             time.Duration `mapstructure:"gap"`
	AllowedLateness time.Duration `mapstructure:"allowed_lateness"`
}

// Window types.
const (
	WindowTumbling = "tumbling"
	WindowSliding  = "sliding"
	WindowSession  = "session"
)

// Sink writes a stage's output (or the dead letters) to exactly one of an
// MQTT topic or a file.
type Sink struct {
	Name string `mapstructure:"name"`
	// From is the stage the sink reads; empty for the dead-letter sink.
	From        string    `mapstructure:"from"`
	DeadLetters bool      `mapstructure:"dead_letters"`
	MQTT        *MQTTSink `mapstructure:"mqtt"`
	File        *FileSink `mapstructure:"file"`
	// Spool bounds the sink's on-disk spool of output waiting for it
	// (exactly_once mode); see docs/data-dir.md.
	Spool SinkSpool `mapstructure:"spool"`
}

// SinkSpool configures a sink's spool. When it reaches MaxSize the sources
// stop reading and input is not acknowledged until the sink drains it.
type SinkSpool struct {
	MaxSize Size `mapstructure:"max_size"`
}

// DefaultSpoolMaxSize is sinks[].spool.max_size when unset; the allowed
// range is MinSpoolMaxSize … MaxSpoolMaxSize.
const (
	DefaultSpoolMaxSize = 1 * GiB
	MinSpoolMaxSize     = 16 * KiB
	MaxSpoolMaxSize     = 1024 * GiB
)

// MQTTSink publishes to a topic template such as "results/{site}/{device}".
type MQTTSink struct {
	Topic string `mapstructure:"topic"`
	// QoS overrides mqtt.qos; nil before Derive means "inherit".
	QoS    *int `mapstructure:"qos"`
	Retain bool `mapstructure:"retain"`
	// Connection is the sink's own broker (the shape of mqtt:, without
	// embedded; its qos is unused, the sink's qos applies); nil: the default
	// connection (mqtt:). Its client_id defaults to mqtt.client_id + "-" +
	// the sink's name.
	Connection *MQTT `mapstructure:"connection"`
}

// defaultConnection is what an unset key of sinks[].mqtt.connection is.
func defaultConnection() MQTT {
	m := Default().MQTT
	m.Broker, m.Embedded = "", EmbeddedMQTT{}
	return m
}

// FileSink appends JSON lines to a file, rotating it at MaxSize and keeping
// MaxFiles rotated files. A relative Path is under data_dir.
type FileSink struct {
	Path     string `mapstructure:"path"`
	MaxSize  Size   `mapstructure:"max_size"` // 0 = never rotate
	MaxFiles int    `mapstructure:"max_files"`
}

// IngestLog configures the per-source ingest logs.
type IngestLog struct {
	SegmentSize Size `mapstructure:"segment_size"`
	MaxSize     Size `mapstructure:"max_size"`
	// SyncInterval is the group-commit window: appends within it share one
	// fsync before their PUBACKs. 0 = every append is fsynced before it is
	// acknowledged.
	SyncInterval time.Duration `mapstructure:"sync_interval"`
}

// Disk is the free-space budget of the file systems eddy writes to
// (data_dir and each file sink's directory).
type Disk struct {
	// MinFree is the free space below which intake pauses: a size
	// ("2GiB"), a percentage of the file system ("10%"), "auto" (the
	// smaller of 5 % and 1 GiB) or "0" (never pause). See MinFreeBudget.
	MinFree string `mapstructure:"min_free"`
	// Reserve is the space kept in data_dir/_reserve for a checkpoint, a
	// state-store rebuild or a restore on a full disk: "auto" (see
	// ReserveAutoMin), a size ("64MiB") or "0" (none). See ReserveSize.
	Reserve string `mapstructure:"reserve"`
}

// ReserveAuto is the default disk.reserve: the managed memory's write
// buffers (state.memory.managed × write_buffer_ratio, what a checkpoint
// flushes at most) plus the largest checkpointed size (new bytes) of a
// checkpoint seen, rounded up to a MiB, at least ReserveAutoMin and at most
// the smaller of ReserveAutoMax and ReserveAutoMaxPercent of the file system.
const (
	ReserveAuto           = "auto"
	ReserveAutoMin        = 16 * MiB
	ReserveAutoMax        = 1 * GiB
	ReserveAutoMaxPercent = 10.0
)

// ReserveSize parses disk.reserve: auto (true), or a fixed size (0: no
// reserve).
func (d Disk) ReserveSize() (auto bool, size Size, err error) {
	v := strings.TrimSpace(d.Reserve)
	if v == "" || strings.EqualFold(v, ReserveAuto) {
		return true, 0, nil
	}
	b, err := ParseSize(v)
	if err != nil {
		return false, 0, fmt.Errorf("%w, auto, or 0 for no reserve", err)
	}
	return false, b, nil
}

// MinFreeAuto is the default disk.min_free: the smaller of
// MinFreeAutoPercent of the file system and MinFreeAutoBytes.
const (
	MinFreeAuto        = "auto"
	MinFreeAutoPercent = 5.0
	MinFreeAutoBytes   = 1 * GiB
)

// MinFreeBudget parses disk.min_free: bytes, percent (0..100), or both
// for "auto" (the budget is then the smaller of the two). Zero for both
// means never pause.
func (d Disk) MinFreeBudget() (bytes Size, percent float64, err error) {
	v := strings.TrimSpace(d.MinFree)
	switch {
	case v == "" || strings.EqualFold(v, MinFreeAuto):
		return MinFreeAutoBytes, MinFreeAutoPercent, nil
	case strings.HasSuffix(v, "%"):
		p, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, "%")), 64)
		if err != nil || p < 0 || p >= 100 || math.IsNaN(p) {
			return 0, 0, fmt.Errorf("invalid percentage %q: want a number from 0 to below 100 followed by %%, e.g. 5%%", d.MinFree)
		}
		return 0, p, nil
	}
	b, err := ParseSize(v)
	if err != nil {
		return 0, 0, fmt.Errorf("%w, a percentage such as 5%%, or auto", err)
	}
	return b, 0, nil
}

// State configures the RocksDB keyed state backend.
type State struct {
	Memory            Memory                  `mapstructure:"memory"`
	Timers            string                  `mapstructure:"timers"` // rocksdb | heap
	WriteCacheEntries int                     `mapstructure:"write_cache_entries"`
	ColumnFamilies    map[string]ColumnFamily `mapstructure:"column_families"`
	MaxBackgroundJobs int                     `mapstructure:"max_background_jobs"`
}

// Memory is the one RocksDB memory budget shared by every subtask.
type Memory struct {
	Managed           Size    `mapstructure:"managed"`
	WriteBufferRatio  float64 `mapstructure:"write_buffer_ratio"`
	HighPrioPoolRatio float64 `mapstructure:"high_prio_pool_ratio"`
	WriteCacheRatio   float64 `mapstructure:"write_cache_ratio"`
}

// ColumnFamily overrides RocksDB options for one state (column family).
// Zero values keep the backend's choice.
type ColumnFamily struct {
	WriteBufferSize      Size   `mapstructure:"write_buffer_size"`
	MaxWriteBufferNumber int    `mapstructure:"max_write_buffer_number"`
	ArenaBlockSize       Size   `mapstructure:"arena_block_size"`
	Compression          string `mapstructure:"compression"` // "" | none | snappy | lz4 | zstd
}

// Checkpointing mirrors Flink's execution.checkpointing.* options.
type Checkpointing struct {
	Interval          time.Duration `mapstructure:"interval"` // 0 = off
	Mode              string        `mapstructure:"mode"`     // exactly_once | at_least_once
	Timeout           time.Duration `mapstructure:"timeout"`
	MinPause          time.Duration `mapstructure:"min_pause"`
	MaxConcurrent     int           `mapstructure:"max_concurrent"`
	TolerableFailures int           `mapstructure:"tolerable_failures"`
	NumRetained       int           `mapstructure:"num_retained"`
	Incremental       bool          `mapstructure:"incremental"`
	Compression       string        `mapstructure:"compression"` // none | snappy
	LocalRecovery     bool          `mapstructure:"local_recovery"`
	History           int           `mapstructure:"history"`
	// AllowNonRestoredState: a restore drops the state of keyed stages the
	// configuration no longer has instead of refusing to start.
	AllowNonRestoredState bool `mapstructure:"allow_non_restored_state"`
	// Unaligned: barriers overtake queued batches (Flink's
	// execution.checkpointing.unaligned.enabled); exactly_once only.
	Unaligned bool `mapstructure:"unaligned"`
	// AlignedTimeout: with Unaligned, start aligned and switch to
	// unaligned after this long (0 = always unaligned; Flink's
	// aligned-checkpoint-timeout).
	AlignedTimeout time.Duration `mapstructure:"aligned_timeout"`
}

// Checkpointing modes.
const (
	ExactlyOnce = "exactly_once"
	AtLeastOnce = "at_least_once"
)

// Upload configures shipping completed checkpoints to remote storage.
type Upload struct {
	Remote          string `mapstructure:"remote"` // "" = off | s3://bucket/prefix | file:///path
	Endpoint        string `mapstructure:"endpoint"`
	Region          string `mapstructure:"region"`
	PathStyle       bool   `mapstructure:"path_style"`
	AccessKeyID     string `mapstructure:"access_key_id"`
	SecretAccessKey string `mapstructure:"secret_access_key"`
	CredentialsFile string `mapstructure:"credentials_file"`
	NumRetained     int    `mapstructure:"num_retained"`
	Parallelism     int    `mapstructure:"parallelism"`
	Bandwidth       Size   `mapstructure:"bandwidth"` // bytes per second, 0 = unlimited
	Compression     string `mapstructure:"compression"`
	// Probe tests a down link with one cheap request per backoff period
	// before retrying an upload.
	Probe bool `mapstructure:"probe"`
	// RetryMaxInterval caps the backoff between retries while the link
	// is down.
	RetryMaxInterval time.Duration `mapstructure:"retry_max_interval"`
	// OrphanGrace: remote objects no committed checkpoint references are
	// deleted once this old; the orphan sweep runs this often.
	OrphanGrace time.Duration `mapstructure:"orphan_grace"`
	// Restore is what a start without a local checkpoint does while the
	// remote does not answer: "wait" for it (an empty start only when it
	// answers that it holds nothing for this appliance), or
	// "empty_if_unreachable" after RestoreTimeout.
	Restore string `mapstructure:"restore"`
	// RestoreTimeout bounds the retries of an unreachable remote when a
	// start has a local checkpoint to fall back on, or with
	// Restore "empty_if_unreachable".
	RestoreTimeout time.Duration `mapstructure:"restore_timeout"`
}

// HTTP configures the REST API, metrics and web page.
type HTTP struct {
	Listen              string `mapstructure:"listen"`
	Token               string `mapstructure:"token"`
	TokenFile           string `mapstructure:"token_file"`
	AllowInsecureRemote bool   `mapstructure:"allow_insecure_remote"`
}

// Log configures the process log.
type Log struct {
	Level  string `mapstructure:"level"`  // debug | info | warn | error
	Format string `mapstructure:"format"` // json | text
}

// Default returns the built-in defaults. It has no appliance_id, sources,
// stages or sinks, so it does not validate on its own.
func Default() *Config {
	return &Config{
		DataDir: "/var/lib/eddy",
		MQTT: MQTT{
			Broker:               "tcp://127.0.0.1:1883",
			Embedded:             EmbeddedMQTT{Listen: "127.0.0.1:1883"},
			QoS:                  1,
			KeepAlive:            30 * time.Second,
			ConnectTimeout:       10 * time.Second,
			ReconnectMaxInterval: 30 * time.Second,
		},
		Pipeline: Pipeline{Parallelism: 0, MaxParallelism: 128},
		IngestLog: IngestLog{
			SegmentSize:  64 * MiB,
			MaxSize:      1 * GiB,
			SyncInterval: 2 * time.Millisecond,
		},
		Disk: Disk{MinFree: MinFreeAuto, Reserve: ReserveAuto},
		State: State{
			Memory:            Memory{Managed: 256 * MiB, WriteBufferRatio: 0.5, HighPrioPoolRatio: 0.1, WriteCacheRatio: 0.25},
			Timers:            "rocksdb",
			WriteCacheEntries: 100_000,
			MaxBackgroundJobs: 2,
		},
		Checkpointing: Checkpointing{
			Interval:          5 * time.Second,
			Mode:              ExactlyOnce,
			Timeout:           10 * time.Minute,
			MinPause:          1 * time.Second,
			MaxConcurrent:     1,
			TolerableFailures: 3,
			NumRetained:       2,
			Incremental:       true,
			Compression:       "none",
			LocalRecovery:     true,
			History:           10,
		},
		Upload: Upload{
			PathStyle:        true,
			NumRetained:      3,
			Parallelism:      4,
			Compression:      "none",
			Probe:            true,
			RetryMaxInterval: time.Minute,
			OrphanGrace:      time.Hour,
			Restore:          "wait",
			RestoreTimeout:   2 * time.Minute,
		},
		HTTP: HTTP{Listen: "127.0.0.1:8086"},
		Log:  Log{Level: "info", Format: "json"},
	}
}

// defaultSource is what each sources[] entry starts from before the file's
// values are laid over it.
func defaultSource() Source {
	return Source{
		Parallelism: 1,
		Format:      "json",
		EventTime:   EventTime{Format: "auto", MaxOutOfOrderness: 5 * time.Second, IdleAdvance: true, MaxFuture: time.Hour},
	}
}

// defaultFileSink is what each sinks[].file starts from.
func defaultFileSink() FileSink {
	return FileSink{MaxSize: 64 * MiB, MaxFiles: 5}
}

// Derive fills in the values that default to other values:
// mqtt.client_id ("eddy-" + appliance_id), sources[].qos and
// sinks[].mqtt.qos (mqtt.qos), sinks[].mqtt.connection.client_id
// (mqtt.client_id + "-" + the sink's name). Load calls it; call it on a Config built in
// code before use.
func (c *Config) Derive() {
	if c.MQTT.ClientID == "" && c.ApplianceID != "" {
		c.MQTT.ClientID = "eddy-" + c.ApplianceID
	}
	for i := range c.Sources {
		if c.Sources[i].QoS == nil {
			q := c.MQTT.QoS
			c.Sources[i].QoS = &q
		}
	}
	for i := range c.Sinks {
		if c.Sinks[i].Spool.MaxSize == 0 {
			c.Sinks[i].Spool.MaxSize = DefaultSpoolMaxSize
		}
		if m := c.Sinks[i].MQTT; m != nil && m.QoS == nil {
			q := c.MQTT.QoS
			m.QoS = &q
		}
		if m := c.Sinks[i].MQTT; m != nil && m.Connection != nil && m.Connection.ClientID == "" && c.MQTT.ClientID != "" {
			m.Connection.ClientID = c.MQTT.ClientID + "-" + c.Sinks[i].Name
		}
	}
}

// Path resolves p against data_dir: absolute paths are returned cleaned,
// relative ones are joined to DataDir.
func (c *Config) Path(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.DataDir, p)
}
