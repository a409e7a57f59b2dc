package powercut

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/mqtttest"
	"github.com/eddy-stream/eddy/test/oracle"
	"github.com/eddy-stream/eddy/test/powercut"
)

func TestMain(m *testing.M) { eddytest.Main(m) }

// cutCase is one configuration the power-cut loop runs.
type cutCase struct {
	name        string
	incremental bool
	upload      bool
	cuts        int
}

// TestResultsExactUnderPowerCuts runs the loop for incremental and full
// snapshots, with and without upload to a file:// remote on the same file
// system. Each run (one chunk of the stream published while it runs, a
// few chunks while eddy is down) ends in SIGKILL and a power cut at a
// random moment: during start-up and recovery, or while it reads, fires,
// checkpoints, rotates its file sink and uploads. After the end marker and
// a final run, the rotated files of the file sink and the MQTT results
// hold every window of the oracle with its exact values, nothing else, and
// an id delivered twice has identical contents.
func TestResultsExactUnderPowerCuts(t *testing.T) {
	if testing.Short() {
		t.Skip("power-cut loop; runs without -short")
	}
	seed := uint64(time.Now().UnixNano() % 1e6)
	if v := os.Getenv("E2E_POWERCUT_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("E2E_POWERCUT_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (replay with E2E_POWERCUT_SEED=%d)", seed, seed)
	cases := []cutCase{
		{name: "incremental", incremental: true, cuts: 6},
		{name: "full snapshots", incremental: false, cuts: 5},
		{name: "incremental upload", incremental: true, upload: true, cuts: 6},
		{name: "full snapshots upload", incremental: false, upload: true, cuts: 5},
	}
	total := 0
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { total += runCuts(t, c, seed+uint64(i)) })
	}
	if total < 20 {
		t.Errorf("%d power cuts in all, want at least 20", total)
	}
}

const (
	appliance = "pc"
	ooo       = 2 * time.Second
	sinkFile  = "results.jsonl"
)

var keyFields = []string{"site", "device"}

// render is the configuration: data_dir, file sink and remote under mnt.
func (c cutCase) render(mnt, brokerURL, httpAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "appliance_id: %s\ndata_dir: %q\n", appliance, filepath.Join(mnt, "data"))
	fmt.Fprintf(&b, "mqtt:\n  broker: %q\n  client_id: eddy-%s\n  qos: 1\n  reconnect_max_interval: 1s\n  connect_timeout: 5s\n", brokerURL, appliance)
	b.WriteString(`sources:
  - name: readings
    topic: "sensors/+/+/telemetry"
    topic_fields: [null, site, device, null]
    event_time:
      field: ts
      format: epoch_ms
      max_out_of_orderness: ` + ooo.String() + `
pipeline:
  parallelism: 2
  stages:
`)
	b.WriteString(eddytest.WindowStages("{type: tumbling, size: 5s}"))
	// A results line is about 340 bytes: the file rotates every 6 lines
	// or so, many times between two cuts.
	fmt.Fprintf(&b, `sinks:
  - name: results
    from: per_device
    file:
      path: %q
      max_size: 2KiB
      max_files: 300
  - name: live
    from: per_device
    mqtt:
      topic: "results/{site}/{device}"
      qos: 1
checkpointing:
  interval: 200ms
  min_pause: 50ms
  mode: exactly_once
  num_retained: 2
`, filepath.Join(mnt, "sinks", sinkFile))
	if !c.incremental {
		b.WriteString("  incremental: false\n  compression: snappy\n")
	}
	b.WriteString("ingest_log:\n  segment_size: 64KiB\n  max_size: 256MiB\n")
	if c.upload {
		fmt.Fprintf(&b, "upload:\n  remote: file://%s\n  num_retained: 2\n  retry_max_interval: 1s\n", filepath.Join(mnt, "remote"))
	}
	b.WriteString("state:\n  memory:\n    managed: 32MiB\n")
	fmt.Fprintf(&b, "http:\n  listen: %q\n", httpAddr)
	b.WriteString("log:\n  level: info\n  format: json\n")
	return b.String()
}

// runCuts runs case c and returns how many cuts it made.
func runCuts(t *testing.T, c cutCase, seed uint64) int {
	fs := powercut.Mount(t, t.TempDir())
	mnt := fs.Dir()
	b := mqtttest.Start(t)
	f := eddytest.NewFeeder(t, b.URL(), "pc-feeder")
	e := eddytest.New(t, eddytest.Config{YAML: func(in *eddytest.Instance) string {
		return c.render(mnt, b.URL(), in.HTTPAddr)
	}})
	sub := eddytest.Subscribe(t, b.URL(), f, "results/#")

	var msgs []simulate.Message
	var good []simulate.Reading
	var endTS int64
	err := simulate.GenerateMessages(simulate.Options{
		Devices: 8, Sites: 2, Count: 14000, Interval: 10 * time.Millisecond,
		Start: time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), Disorder: time.Second,
		Seed: int64(seed), EndMarker: true,
	}, func(m simulate.Message) error {
		msgs = append(msgs, m)
		if m.End {
			endTS = m.Readings[0].TS
		} else {
			good = append(good, m.Readings...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	body, end := msgs[:len(msgs)-1], msgs[len(msgs)-1:]

	rng := rand.New(rand.NewPCG(seed, 7))
	cuts := 0
	cut := func(what string) {
		t.Helper()
		e.Kill()
		before := sinkState(mnt)
		if err := fs.Cut(); err != nil {
			t.Fatalf("cut %d: %v", cuts+1, err)
		}
		cuts++
		t.Logf("cut %d: %s; file sink before the cut: %s, after: %s", cuts, what, before, sinkState(mnt))
	}
	chunks := c.cuts
	for i := range chunks {
		chunk := body[i*len(body)/chunks : (i+1)*len(body)/chunks]
		// Not the first chunk: eddy's persistent session does not exist
		// before its first connection, so the broker would drop it.
		whileDown := i > 0 && rng.IntN(4) == 0
		if whileDown {
			f.MustSend(t, chunk)
		}
		p := e.Start()
		if i == 0 {
			p.WaitReady()
			p.Probe(f)
		}
		var sent <-chan error
		if whileDown {
			done := make(chan error, 1)
			done <- nil
			sent = done
		} else {
			sent = f.Trickle(chunk) // so that cuts land while eddy reads it
		}
		var how string
		if i > 0 && rng.IntN(5) == 0 {
			d := time.Duration(rng.IntN(400)) * time.Millisecond
			time.Sleep(d)
			how = fmt.Sprintf("%v after exec", d)
		} else {
			p.WaitReady()
			d := time.Duration(rng.IntN(1500)) * time.Millisecond
			time.Sleep(d)
			how = fmt.Sprintf("%v after ready", d)
		}
		if p.Exited() {
			t.Fatalf("run %d ended by itself: %v\n%s", i+1, p.ExitErr(), eddytest.Tail(p.LogPath, 40))
		}
		// The rest of the chunk is still published while the power is
		// off: the broker keeps it for eddy's session.
		cut(fmt.Sprintf("chunk %d (%d messages%s), killed %s", i+1, len(chunk), map[bool]string{true: ", published while down"}[whileDown], how))
		if err := <-sent; err != nil {
			t.Fatalf("publish chunk %d: %v", i+1, err)
		}
	}
	// The end marker fires every window at once: cut while eddy fires and
	// publishes them, after it has checkpointed at least once in the run.
	f.MustSend(t, end)
	for range 2 {
		p := e.StartReady()
		before := p.LatestCompleted()
		p.WaitFor("a checkpoint", eddytest.LongTimeout, func() bool { return p.LatestCompleted() > before })
		d := time.Duration(rng.IntN(300)) * time.Millisecond
		time.Sleep(d)
		cut(fmt.Sprintf("end marker, killed %v after a checkpoint", d))
	}

	p := e.StartReady()
	want := oracle.Compute(eddytest.ToOracle(good), oracle.Window{Type: "tumbling", Size: 5000}, eddytest.WindowAggs, eddytest.CloseAt(endTS, ooo))
	var got *eddytest.ResultSet
	ok := eddytest.Poll(eddytest.LongTimeout, eddytest.PollEvery, func() bool {
		p.MustRun()
		got = readSink(t, mnt)
		return got.Missing(want) == 0
	})
	if ok {
		// Everything eddy has read is published: two more checkpoints
		// (the second covers the watermark of the first one's batch).
		p.WaitFor("the source to read every message", eddytest.LongTimeout, func() bool {
			o := p.Overview()
			return len(o.Ingest) > 0 && o.Ingest[0].Lag == 0
		})
		p.Trigger()
		id := p.Trigger()
		p.WaitFor(fmt.Sprintf("checkpoint %d to be published", id), eddytest.LongTimeout, func() bool {
			_, err := os.Stat(filepath.Join(mnt, "data", "checkpoints", fmt.Sprintf("chk-%d", id), "_published"))
			return err == nil
		})
		got = readSink(t, mnt)
	} else {
		t.Errorf("timed out after %v: %d of %d windows in the file sink; the first missing: %v",
			eddytest.LongTimeout, len(want)-got.Missing(want), len(want), first(got.MissingIDs(want), 10))
	}
	files := rotated(mnt)
	eddytest.CompareResults(t, "file sink ("+strconv.Itoa(len(files))+" rotated files and "+sinkFile+")", got, want, eddytest.WindowAggs)
	viaMQTT := sub.WaitResults(appliance, "per_device", keyFields, want)
	eddytest.CompareResults(t, "results over MQTT", viaMQTT, want, eddytest.WindowAggs)
	eddytest.CrossCheck(t, got, viaMQTT)
	if len(files) < c.cuts {
		t.Errorf("the file sink rotated %d times in %d cuts: max_size does not make it rotate between cuts", len(files), cuts)
	}
	if c.upload {
		// The remote on the same file system survived the cuts: it takes
		// the newest checkpoint.
		id := p.LatestCompleted()
		p.WaitFor(fmt.Sprintf("checkpoint %d on the remote", id), eddytest.LongTimeout, func() bool {
			return p.Upload().NewestCheckpoint >= id
		})
	}
	t.Logf("%d cuts; %d readings, %d windows; file sink: %d lines in %d files, %d duplicates; MQTT: %d messages, %d duplicates",
		cuts, len(good), len(want), got.Lines, len(files)+1, got.Dups, viaMQTT.Lines, viaMQTT.Dups)
	return cuts
}

// rotated are the file sink's rotated files, results.jsonl.N, oldest
// first.
func rotated(mnt string) []string {
	paths, _ := filepath.Glob(filepath.Join(mnt, "sinks", sinkFile+".*"))
	n := func(p string) int {
		i, _ := strconv.Atoi(p[strings.LastIndexByte(p, '.')+1:])
		return i
	}
	slices.SortFunc(paths, func(a, b string) int { return n(b) - n(a) })
	return paths
}

// readSink reads every file of the file sink, oldest first; a partial
// line at the end of any of them is a problem (eddy cuts a torn line off
// when it reopens the file, and only the current one is reopened).
func readSink(t *testing.T, mnt string) *eddytest.ResultSet {
	t.Helper()
	var all []string
	var partial []string
	for _, p := range append(rotated(mnt), filepath.Join(mnt, "sinks", sinkFile)) {
		lines, part, err := eddytest.ReadLines(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, lines...)
		if part != "" {
			partial = append(partial, fmt.Sprintf("%s ends in a partial line: %.120s", filepath.Base(p), part))
		}
	}
	rs := eddytest.CollectResults(all, appliance, "per_device", keyFields)
	rs.Problems = append(rs.Problems, partial...)
	return rs
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// sinkState says how many files the file sink has and how many lines
// they hold.
func sinkState(mnt string) string {
	files := append(rotated(mnt), filepath.Join(mnt, "sinks", sinkFile))
	n := 0
	for _, p := range files {
		lines, _, _ := eddytest.ReadLines(p)
		n += len(lines)
	}
	return fmt.Sprintf("%d lines in %d files", n, len(files))
}
