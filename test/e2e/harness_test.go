package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/mqtttest"
)

// The suite's deadlines are the harness's.
const (
	readyTimeout   = eddytest.ReadyTimeout
	resultsTimeout = eddytest.LongTimeout
	exitTimeout    = eddytest.ExitTimeout
)

func TestMain(m *testing.M) { eddytest.Main(m) }

// startBroker runs mosquitto for one test (mqtttest lifts its limits).
func startBroker(t *testing.T) *mqtttest.Broker {
	t.Helper()
	return mqtttest.Start(t)
}

// ---------------------------------------------------------------------------
// Configuration

// source is one entry of sources:.
type source struct {
	Name  string
	Topic string // default sensors/+/+/telemetry
	OOO   string // max_out_of_orderness; default 5s
	Idle  string // idle_timeout; default none
	// NoTopicFields takes site and device from the payload only.
	NoTopicFields bool
}

// config renders an eddy configuration. Stages is the YAML of the list
// pipeline.stages, each item starting with "    - ".
type config struct {
	Appliance      string
	Sources        []source
	Parallelism    int
	MaxParallelism int // 0: leave the default
	Stages         string
	ResultsFrom    string // stage the results file sink (and MQTT sink) read
	MQTTTopic      string // "": no MQTT sink
	Interval       string // checkpointing.interval; default 300ms
	MinPause       string // default 100ms
	Mode           string // default exactly_once
	NumRetained    int    // default: eddy's
	Checkpointing  string // more lines under checkpointing:, each starting with "  "
	Timers         string // state.timers; default eddy's
	SegmentSize    string // ingest_log.segment_size; default eddy's
	ExtraSinks     string // more items of sinks:, each starting with "  - "
	ResultsSpool   string // sinks[results].spool.max_size; default eddy's
}

// windowStages is the harness's.
var windowStages = eddytest.WindowStages

func (c config) render(dataDir, brokerURL, httpAddr string) string {
	if c.Appliance == "" {
		c.Appliance = "e2e"
	}
	if len(c.Sources) == 0 {
		c.Sources = []source{{Name: "readings"}}
	}
	if c.Parallelism == 0 {
		c.Parallelism = 2
	}
	if c.Interval == "" {
		c.Interval = "300ms"
	}
	if c.MinPause == "" {
		c.MinPause = "100ms"
	}
	if c.Mode == "" {
		c.Mode = "exactly_once"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "appliance_id: %s\ndata_dir: %q\n", c.Appliance, dataDir)
	fmt.Fprintf(&b, "mqtt:\n  broker: %q\n  client_id: eddy-%s\n  qos: 1\n  reconnect_max_interval: 1s\n  connect_timeout: 5s\n", brokerURL, c.Appliance)
	b.WriteString("sources:\n")
	for _, s := range c.Sources {
		if s.Topic == "" {
			s.Topic = "sensors/+/+/telemetry"
		}
		if s.OOO == "" {
			s.OOO = "5s"
		}
		fmt.Fprintf(&b, "  - name: %s\n    topic: %q\n", s.Name, s.Topic)
		if !s.NoTopicFields {
			b.WriteString("    topic_fields: [null, site, device, null]\n")
		}
		fmt.Fprintf(&b, "    event_time:\n      field: ts\n      format: epoch_ms\n      max_out_of_orderness: %s\n", s.OOO)
		if s.Idle != "" {
			fmt.Fprintf(&b, "      idle_timeout: %s\n", s.Idle)
		}
	}
	fmt.Fprintf(&b, "pipeline:\n  parallelism: %d\n", c.Parallelism)
	if c.MaxParallelism > 0 {
		fmt.Fprintf(&b, "  max_parallelism: %d\n", c.MaxParallelism)
	}
	b.WriteString("  stages:\n")
	b.WriteString(c.Stages)
	b.WriteString("sinks:\n")
	fmt.Fprintf(&b, "  - name: results\n    from: %s\n    file:\n      path: results.jsonl\n      max_size: 0\n", c.ResultsFrom)
	if c.ResultsSpool != "" {
		fmt.Fprintf(&b, "    spool:\n      max_size: %s\n", c.ResultsSpool)
	}
	if c.MQTTTopic != "" {
		fmt.Fprintf(&b, "  - name: live\n    from: %s\n    mqtt:\n      topic: %q\n      qos: 1\n", c.ResultsFrom, c.MQTTTopic)
	}
	b.WriteString(c.ExtraSinks)
	b.WriteString("  - name: dead\n    dead_letters: true\n    file:\n      path: dead-letters.jsonl\n      max_size: 0\n")
	fmt.Fprintf(&b, "checkpointing:\n  interval: %s\n  min_pause: %s\n  mode: %s\n", c.Interval, c.MinPause, c.Mode)
	if c.NumRetained > 0 {
		fmt.Fprintf(&b, "  num_retained: %d\n", c.NumRetained)
	}
	b.WriteString(c.Checkpointing)
	if c.SegmentSize != "" {
		fmt.Fprintf(&b, "ingest_log:\n  segment_size: %s\n  max_size: 256MiB\n", c.SegmentSize)
	}
	b.WriteString("state:\n  memory:\n    managed: 32MiB\n")
	if c.Timers != "" {
		fmt.Fprintf(&b, "  timers: %s\n", c.Timers)
	}
	fmt.Fprintf(&b, "http:\n  listen: %q\n", httpAddr)
	b.WriteString("log:\n  level: info\n  format: json\n")
	return b.String()
}

// ---------------------------------------------------------------------------
// The appliance

// eddy is one appliance of the suite on the harness: its configuration is
// cfg, rendered for broker b. The harness's methods (Start, StartReady,
// Kill, Stop, Overview, Checkpoints, Trigger, WaitFor, Probe, ...) act on
// the newest run.
type eddy struct {
	*eddytest.Instance
	t   *testing.T
	cfg config
}

func newEddy(t *testing.T, b *mqtttest.Broker, c config) *eddy {
	t.Helper()
	in := eddytest.New(t, eddytest.Config{YAML: func(in *eddytest.Instance) string {
		return c.render(in.DataDir, b.URL(), in.HTTPAddr)
	}})
	return &eddy{Instance: in, t: t, cfg: c}
}

// newFeeder publishes to b as clientID.
func newFeeder(t *testing.T, b *mqtttest.Broker, clientID string) *eddytest.Feeder {
	t.Helper()
	return eddytest.NewFeeder(t, b.URL(), clientID)
}

// waitCaughtUp waits until every source has read its whole ingest log and
// has received at least want[source] messages in this run (0: any).
func (e *eddy) waitCaughtUp(want map[string]int64) {
	e.t.Helper()
	e.WaitFor("the sources to read every message", resultsTimeout, func() bool {
		o := e.Overview()
		if len(o.Ingest) == 0 {
			return false
		}
		for _, in := range o.Ingest {
			if in.Lag != 0 || in.Received < want[in.Source] {
				return false
			}
		}
		return true
	})
}

// quiesce makes sure that everything eddy has read is published: it waits
// until the sources have caught up, takes two checkpoints (the second one
// covers the watermark the first one's batch produced) and waits until
// the results file sink confirmed the second.
func (e *eddy) quiesce() {
	e.t.Helper()
	e.waitCaughtUp(nil)
	e.Trigger()
	id := e.Trigger()
	e.WaitFor(fmt.Sprintf("checkpoint %d to be published", id), resultsTimeout, func() bool {
		for _, n := range completedCheckpoints(e.Path("checkpoints")) {
			if n >= id {
				b, err := os.ReadFile(filepath.Join(e.Path("checkpoints"), fmt.Sprintf("chk-%d", n), checkpoint.PublishedFile))
				if p, perr := checkpoint.ParsePublished(b); err == nil && perr == nil && p.Has("results") {
					return true // the results file sink confirmed it
				}
			}
		}
		return false
	})
}

// completedCheckpoints lists the ids of chk-N directories with _metadata.
func completedCheckpoints(dir string) []int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var ids []int64
	for _, de := range entries {
		s, ok := strings.CutPrefix(de.Name(), "chk-")
		if !ok || !de.IsDir() {
			continue
		}
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, de.Name(), "_metadata")); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// ---------------------------------------------------------------------------
// Reading sinks

// readLines is the harness's.
var readLines = eddytest.ReadLines
