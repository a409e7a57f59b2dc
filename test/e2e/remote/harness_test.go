package remote

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/mqtttest"
	"github.com/eddy-stream/eddy/test/oracle"
	"github.com/eddy-stream/eddy/test/s3test"
	"github.com/eddy-stream/eddy/upload"
)

const (
	longTimeout = eddytest.LongTimeout
	appliance   = "box-e2e"
)

func TestMain(m *testing.M) { eddytest.Main(m) }

// remote is where an appliance uploads: versitygw or a directory.
type remote struct {
	name  string
	s3    *s3test.Server // nil for file://
	dir   string         // the file:// root
	store upload.Store
}

func newS3Remote(t *testing.T) *remote {
	t.Helper()
	srv := s3test.Start(t)
	return &remote{name: "s3", s3: srv, store: s3Store(t, srv, "fleet")}
}

// s3Store is the store of srv's bucket under prefix.
func s3Store(tb testing.TB, srv *s3test.Server, prefix string) upload.Store {
	tb.Helper()
	st, err := upload.NewS3Store(upload.S3Options{Endpoint: srv.Endpoint(), Bucket: s3test.Bucket, Prefix: prefix,
		PathStyle: true, AccessKeyID: s3test.AccessKey, SecretAccessKey: s3test.SecretKey, Region: "us-east-1"})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

func newFileRemote(t *testing.T) *remote {
	t.Helper()
	dir := t.TempDir()
	st, err := upload.NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &remote{name: "file", dir: dir, store: st}
}

// yaml is the upload: section for r.
func (r *remote) yaml(extra string) string {
	var b strings.Builder
	b.WriteString("upload:\n")
	if r.s3 != nil {
		fmt.Fprintf(&b, "  remote: s3://%s/fleet\n  endpoint: %s\n  region: us-east-1\n  path_style: true\n", s3test.Bucket, r.s3.Endpoint())
		// The keys come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
	} else {
		fmt.Fprintf(&b, "  remote: file://%s\n", r.dir)
	}
	b.WriteString(extra)
	return b.String()
}

func (r *remote) env() []string {
	if r.s3 == nil {
		return nil
	}
	return []string{"AWS_ACCESS_KEY_ID=" + s3test.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3test.SecretKey}
}

// eddy is one appliance of the suite on the harness, with its results
// outside the data directory. The harness's methods act on the newest run.
type eddy struct {
	*eddytest.Instance
	t       *testing.T
	results string
}

// newFeeder publishes to b.
func newFeeder(t *testing.T, b *mqtttest.Broker) *eddytest.Feeder {
	t.Helper()
	return eddytest.NewFeeder(t, b.URL(), "feeder")
}

// uploadStatus is GET /api/v1/upload with its details read as the
// uploader's figures.
type uploadStatus struct {
	daemon.RemoteStatus
	Details upload.Stats `json:"details"`
}

func (e *eddy) upload() uploadStatus {
	e.t.Helper()
	var u uploadStatus
	e.MustGet("/api/v1/upload", &u)
	return u
}

// newEddy writes the configuration: one source, a keyed tumbling window
// of 10 s with count, avg and max, results to a file outside data_dir (a
// consumer downstream keeps them when the disk dies), checkpoints every
// 500 ms, and the given upload section.
func newEddy(t *testing.T, b *mqtttest.Broker, r *remote, uploadExtra string) *eddy {
	t.Helper()
	return newEddySinks(t, b, r, uploadExtra, "")
}

// newEddySinks is newEddy with more sinks (YAML list items).
func newEddySinks(t *testing.T, b *mqtttest.Broker, r *remote, uploadExtra, extraSinks string) *eddy {
	t.Helper()
	e := &eddy{t: t}
	e.Instance = eddytest.New(t, eddytest.Config{Env: r.env(), YAML: func(in *eddytest.Instance) string {
		e.results = filepath.Join(in.Dir, "out", "results.jsonl")
		return fmt.Sprintf(`appliance_id: %s
data_dir: %q
mqtt:
  broker: %q
  client_id: eddy-%s
  qos: 1
  reconnect_max_interval: 1s
  connect_timeout: 5s
sources:
  - name: readings
    topic: "sensors/+/+/telemetry"
    topic_fields: [null, site, device, null]
    event_time: {field: ts, format: epoch_ms, max_out_of_orderness: 2s}
pipeline:
  parallelism: 2
  stages:
    - name: per_device
      key_by: [site, device]
      window: {type: tumbling, size: 10s}
      aggregate: {count: "count()", avg_temp: "avg(temperature)", max_temp: "max(temperature)"}
sinks:
  - name: results
    from: per_device
    file: {path: %q, max_size: 0}
  - name: dead
    dead_letters: true
    file: {path: %q, max_size: 0}
%scheckpointing:
  interval: 500ms
  min_pause: 100ms
  history: 100
state:
  memory:
    managed: 32MiB
http:
  listen: %q
log:
  level: info
  format: json
`, appliance, in.DataDir, b.URL(), appliance, e.results, filepath.Join(in.Dir, "out", "dead.jsonl"), extraSinks, in.HTTPAddr) +
			r.yaml(uploadExtra)
	}})
	return e
}

// newRig starts a broker, writes the configuration of an eddy uploading
// to r (with uploadExtra) and returns it with a feeder and the stream of o.
func newRig(t *testing.T, r *remote, uploadExtra string, o simulate.Options) (*eddy, *eddytest.Feeder, *stream) {
	t.Helper()
	b := mqtttest.Start(t)
	return newEddy(t, b, r, uploadExtra), newFeeder(t, b), newStream(t, o)
}

// startFed starts eddy, probes it, publishes msgs and waits until it has
// read them.
func (e *eddy) startFed(f *eddytest.Feeder, msgs []simulate.Message) {
	e.t.Helper()
	e.StartReady()
	probes := e.Probe(f)
	f.MustSend(e.t, msgs)
	e.waitIngested(probes + int64(len(msgs)))
}

// waitIngested waits until the source has received n messages in this
// run and read them all.
func (e *eddy) waitIngested(n int64) {
	e.t.Helper()
	e.WaitFor(fmt.Sprintf("%d messages to be read", n), longTimeout, func() bool {
		o := e.Overview()
		return len(o.Ingest) == 1 && o.Ingest[0].Received >= n && o.Ingest[0].Lag == 0
	})
}

// waitRemote waits until the remote's newest checkpoint is id or newer.
func (e *eddy) waitRemote(id int64) uploadStatus {
	e.t.Helper()
	var u uploadStatus
	e.WaitFor(fmt.Sprintf("checkpoint %d on the remote", id), longTimeout, func() bool {
		u = e.upload()
		return u.NewestCheckpoint >= id
	})
	return u
}

// stream is a generated input.
type stream struct {
	msgs  []simulate.Message // end marker last
	good  []simulate.Reading
	endTS int64
}

func newStream(t *testing.T, o simulate.Options) *stream {
	t.Helper()
	s := &stream{}
	err := simulate.GenerateMessages(o, func(m simulate.Message) error {
		s.msgs = append(s.msgs, m)
		if m.End {
			s.endTS = m.Readings[0].TS
		} else {
			s.good = append(s.good, m.Readings...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var aggs = []oracle.Agg{
	{Name: "count", Fn: "count"},
	{Name: "avg_temp", Fn: "avg", Field: "temperature"},
	{Name: "max_temp", Fn: "max", Field: "temperature"},
}

// want is what an uninterrupted run must deliver: every window closed by
// the end marker's watermark (max out-of-orderness 2 s).
func (s *stream) want() map[string]oracle.Result {
	rs := make([]oracle.Reading, len(s.good))
	for i, r := range s.good {
		rs[i] = oracle.Reading{Key: r.Site + "|" + r.Device, TS: r.TS, Vals: map[string]float64{"temperature": r.Temperature}}
	}
	return oracle.Compute(rs, oracle.Window{Type: "tumbling", Size: 10_000}, aggs, s.endTS-2000)
}

// results reads the results file: the highest firing per window (probes
// and the end marker left out), checking that one id never has two
// contents.
func (e *eddy) readResults() (map[string]map[string]float64, []string) {
	e.t.Helper()
	f, err := os.Open(e.results)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	type line struct {
		ID     string `json:"id"`
		Site   string `json:"site"`
		Device string `json:"device"`
		Start  int64  `json:"window_start"`
		End    int64  `json:"window_end"`
		Firing int    `json:"firing"`
	}
	out := map[string]map[string]float64{}
	firing := map[string]int{}
	byID := map[string]string{}
	var problems []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 8<<20)
	for sc.Scan() {
		raw := sc.Bytes()
		var l line
		if err := json.Unmarshal(raw, &l); err != nil {
			problems = append(problems, fmt.Sprintf("bad line %q: %v", raw, err))
			continue
		}
		if prev, ok := byID[l.ID]; ok && prev != string(raw) {
			problems = append(problems, fmt.Sprintf("id %s with two contents:\n%s\n%s", l.ID, prev, raw))
		}
		byID[l.ID] = string(raw)
		if strings.HasPrefix(l.Device, "_") {
			continue
		}
		var vals map[string]float64
		dec := json.NewDecoder(bytes.NewReader(raw))
		var m map[string]any
		if dec.Decode(&m) == nil {
			vals = map[string]float64{}
			for _, a := range aggs {
				if v, ok := m[a.Name].(float64); ok {
					vals[a.Name] = v
				}
			}
		}
		k := oracle.ID(l.Site+"|"+l.Device, l.Start, l.End)
		if l.Firing >= firing[k] {
			firing[k], out[k] = l.Firing, vals
		}
	}
	return out, problems
}

// compare checks the delivered results against the oracle, exactly.
func compare(t *testing.T, got map[string]map[string]float64, problems []string, want map[string]oracle.Result) {
	t.Helper()
	errs := append([]string(nil), problems...)
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, ok := got[k]
		if !ok {
			errs = append(errs, "missing window "+k)
			continue
		}
		for _, a := range aggs {
			if !oracle.Close(g[a.Name], want[k].Values[a.Name]) {
				errs = append(errs, fmt.Sprintf("window %s: %s = %v, want %v", k, a.Name, g[a.Name], want[k].Values[a.Name]))
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			errs = append(errs, "unexpected window "+k)
		}
	}
	if len(errs) > 0 {
		if len(errs) > 20 {
			errs = errs[:20]
		}
		t.Fatalf("%d windows expected, %d delivered:\n%s", len(want), len(got), strings.Join(errs, "\n"))
	}
}

// waitResults waits until every window of want is delivered.
func (e *eddy) waitResults(want map[string]oracle.Result) {
	e.t.Helper()
	e.WaitFor(fmt.Sprintf("%d windows", len(want)), longTimeout, func() bool {
		got, _ := e.readResults()
		for k := range want {
			if _, ok := got[k]; !ok {
				return false
			}
		}
		return true
	})
}

// remoteObjects lists the appliance's objects, relative to its directory.
func remoteObjects(t *testing.T, s upload.Store) map[string]upload.ObjectInfo {
	t.Helper()
	objs, err := s.List(t.Context(), appliance+"/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]upload.ObjectInfo{}
	for _, o := range objs {
		out[strings.TrimPrefix(o.Key, appliance+"/")] = o
	}
	return out
}

// committed reads every committed remote _metadata and returns the keys
// each references. It fails the test if one names a missing object.
func committed(t *testing.T, s upload.Store) map[int64][]string {
	t.Helper()
	objs := remoteObjects(t, s)
	ids, err := upload.RemoteCheckpoints(t.Context(), s, appliance)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64][]string{}
	for _, id := range ids {
		r, err := s.Get(t.Context(), appliance+"/"+upload.MetadataRel(id))
		if errors.Is(err, upload.ErrNotFound) {
			continue // deleted by retention since the listing
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		m, err := upload.DecodeManifest(data)
		if err != nil {
			t.Fatalf("remote checkpoint %d: %v", id, err)
		}
		out[id] = m.Keys()
		for _, k := range m.Keys() {
			if _, ok := objs[k]; !ok {
				// Not in the listing: uploaded after it (this checkpoint
				// committed between the listing and RemoteCheckpoints), or
				// removed by retention since — but only after its _metadata.
				if _, err := s.Stat(t.Context(), appliance+"/"+k); err == nil {
					continue
				}
				if _, err := s.Stat(t.Context(), appliance+"/"+upload.MetadataRel(id)); err == nil {
					t.Fatalf("remote checkpoint %d references missing object %s", id, k)
				}
			}
		}
	}
	return out
}
