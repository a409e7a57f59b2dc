package uploade2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/mqtttest"
	"github.com/eddy-stream/eddy/test/oracle"
	"github.com/eddy-stream/eddy/test/s3test"
	"github.com/eddy-stream/eddy/upload"
)

var eddyBin string

const (
	readyTimeout = 90 * time.Second
	longTimeout  = 180 * time.Second
	pollEvery    = 100 * time.Millisecond
	appliance    = "box-e2e"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eddy-uploade2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	eddyBin = filepath.Join(dir, "eddy")
	cmd := exec.Command("go", "build", "-o", eddyBin, "github.com/eddy-stream/eddy/cmd/eddy")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/eddy: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

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
	st, err := upload.NewS3Store(upload.S3Options{Endpoint: srv.Endpoint(), Bucket: s3test.Bucket, Prefix: "fleet",
		PathStyle: true, AccessKeyID: s3test.AccessKey, SecretAccessKey: s3test.SecretKey, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return &remote{name: "s3", s3: srv, store: st}
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

// eddy is one appliance: configuration, data dir, results outside it.
type eddy struct {
	t        *testing.T
	dir      string
	cfgPath  string
	dataDir  string
	results  string
	httpAddr string
	env      []string
	runs     []*proc
	http     *http.Client
}

type proc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logPath string
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// newEddy writes the configuration: one source, a keyed tumbling window
// of 10 s with count, avg and max, results to a file outside data_dir (a
// consumer downstream keeps them when the disk dies), checkpoints every
// 500 ms, and the given upload section.
func newEddy(t *testing.T, b *mqtttest.Broker, r *remote, uploadExtra string) *eddy {
	t.Helper()
	dir := t.TempDir()
	e := &eddy{t: t, dir: dir, cfgPath: filepath.Join(dir, "eddy.yaml"), dataDir: filepath.Join(dir, "data"),
		results: filepath.Join(dir, "out", "results.jsonl"), httpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		env: r.env(), http: &http.Client{Timeout: 30 * time.Second}}
	cfg := fmt.Sprintf(`appliance_id: %s
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
checkpointing:
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
`, appliance, e.dataDir, b.URL(), appliance, e.results, filepath.Join(dir, "out", "dead.jsonl"), e.httpAddr)
	cfg += r.yaml(uploadExtra)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.killNow()
		if t.Failed() {
			for i, p := range e.runs {
				t.Logf("eddy run %d (exit %v), log tail:\n%s", i+1, p.waitErr, tail(p.logPath, 60))
			}
		}
		e.http.CloseIdleConnections()
	})
	return e
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDDY_") && !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return env
}

// run runs an eddy subcommand to completion and returns its output.
func (e *eddy) run(args ...string) (string, error) {
	cmd := exec.Command(eddyBin, args...)
	cmd.Env = append(cleanEnv(), e.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// start runs `eddy run` in its own process group; env adds variables.
func (e *eddy) start(env ...string) *proc {
	e.t.Helper()
	logPath := filepath.Join(e.dir, fmt.Sprintf("eddy-%02d.log", len(e.runs)+1))
	f, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(eddyBin, "run", "--config", e.cfgPath)
	cmd.Dir = e.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(cleanEnv(), e.env...), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	e.runs = append(e.runs, p)
	return p
}

func (e *eddy) current() *proc { return e.runs[len(e.runs)-1] }

func (e *eddy) startReady(env ...string) {
	e.t.Helper()
	p := e.start(env...)
	deadline := time.Now().Add(readyTimeout)
	for {
		if p.exited() {
			e.t.Fatalf("eddy exited before it was ready: %v\n%s", p.waitErr, tail(p.logPath, 40))
		}
		resp, err := e.http.Get("http://" + e.httpAddr + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("eddy not ready within %v", readyTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL to eddy's process group and waits for it.
func (e *eddy) kill() {
	e.t.Helper()
	p := e.current()
	if p.exited() {
		e.t.Fatalf("eddy died on its own: %v\n%s", p.waitErr, tail(p.logPath, 40))
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		e.t.Fatal("eddy did not die after SIGKILL")
	}
}

func (e *eddy) killNow() {
	for _, p := range e.runs {
		if !p.exited() {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(time.Minute):
			}
		}
	}
}

func (e *eddy) mustRun() {
	e.t.Helper()
	if p := e.current(); p.exited() {
		e.t.Fatalf("eddy is not running (exit %v)\n%s", p.waitErr, tail(p.logPath, 40))
	}
}

func (e *eddy) getJSON(path string, v any) error {
	resp, err := e.http.Get("http://" + e.httpAddr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

func (e *eddy) mustGet(path string, v any) {
	e.t.Helper()
	if err := e.getJSON(path, v); err != nil {
		e.mustRun()
		e.t.Fatal(err)
	}
}

// uploadStatus is GET /api/v1/upload, with the uploader's figures.
type uploadStatus struct {
	Remote           string       `json:"remote"`
	LinkUp           bool         `json:"link_up"`
	NewestCheckpoint int64        `json:"newest_checkpoint"`
	LagMs            int64        `json:"lag_ms"`
	BytesPending     int64        `json:"bytes_pending"`
	BytesSent        int64        `json:"bytes_sent"`
	LastError        string       `json:"last_error"`
	Details          upload.Stats `json:"details"`
}

func (e *eddy) upload() uploadStatus {
	e.t.Helper()
	var u uploadStatus
	e.mustGet("/api/v1/upload", &u)
	return u
}

type overview struct {
	Ingest []struct {
		Source   string `json:"source"`
		Received int64  `json:"messages_received"`
		Lag      int64  `json:"lag"`
	} `json:"ingest"`
	Recovery *struct {
		Source     string `json:"source"`
		Checkpoint int64  `json:"checkpoint"`
		LostLogs   []struct {
			Source           string `json:"source"`
			Checkpoint       int64  `json:"checkpoint"`
			CheckpointOffset uint64 `json:"checkpoint_offset"`
		} `json:"lost_logs"`
	} `json:"recovery"`
}

func (e *eddy) overview() overview {
	e.t.Helper()
	var o overview
	e.mustGet("/api/v1/overview", &o)
	return o
}

type cpStats struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
	Remote string `json:"remote_status"`
}

type cpOverview struct {
	Counts struct {
		Completed int64 `json:"completed"`
	} `json:"counts"`
	Latest struct {
		Completed *cpStats `json:"completed"`
	} `json:"latest"`
	History []cpStats `json:"history"`
}

func (e *eddy) checkpoints() cpOverview {
	e.t.Helper()
	var o cpOverview
	e.mustGet("/api/v1/checkpoints", &o)
	return o
}

func (e *eddy) latestCompleted() int64 {
	e.t.Helper()
	if c := e.checkpoints().Latest.Completed; c != nil {
		return c.ID
	}
	return 0
}

// trigger takes a checkpoint and returns its id.
func (e *eddy) trigger() int64 {
	e.t.Helper()
	resp, err := e.http.Post("http://"+e.httpAddr+"/api/v1/checkpoints", "application/json", nil)
	if err != nil {
		e.mustRun()
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "COMPLETED" {
		e.t.Fatalf("trigger: %s: %s", resp.Status, body)
	}
	return r.ID
}

func (e *eddy) metrics() string {
	e.t.Helper()
	resp, err := e.http.Get("http://" + e.httpAddr + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (e *eddy) waitFor(what string, d time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		e.mustRun()
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(pollEvery)
	}
}

// waitIngested waits until the source has received n messages in this
// run and read them all.
func (e *eddy) waitIngested(n int64) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%d messages to be read", n), longTimeout, func() bool {
		o := e.overview()
		return len(o.Ingest) == 1 && o.Ingest[0].Received >= n && o.Ingest[0].Lag == 0
	})
}

// waitRemote waits until the remote's newest checkpoint is id or newer.
func (e *eddy) waitRemote(id int64) uploadStatus {
	e.t.Helper()
	var u uploadStatus
	e.waitFor(fmt.Sprintf("checkpoint %d on the remote", id), longTimeout, func() bool {
		u = e.upload()
		return u.NewestCheckpoint >= id
	})
	return u
}

// probeTS is the event time of probe readings, before any stream.
var probeTS = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// probe publishes a probe reading until eddy's source has received one,
// so that its persistent subscription is in place before the test
// publishes. It returns the number of probes received.
func (e *eddy) probe(f *feeder) int64 {
	e.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		o := e.overview()
		if len(o.Ingest) == 1 && o.Ingest[0].Received > 0 {
			return o.Ingest[0].Received
		}
		if time.Now().After(deadline) {
			e.t.Fatal("eddy received no probe")
		}
		payload := fmt.Sprintf(`{"ts":%d,"temperature":1,"humidity":0}`, probeTS)
		f.mustSend(e.t, []simulate.Message{{Topic: "sensors/site-1/_probe/telemetry", Payload: []byte(payload)}})
		time.Sleep(300 * time.Millisecond)
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// feeder publishes at QoS 1 to mosquitto.
type feeder struct{ pub *mqttio.Publisher }

func newFeeder(t *testing.T, b *mqtttest.Broker) *feeder {
	t.Helper()
	p := mqttio.NewPublisher(mqttio.ClientOptions{Broker: b.URL(), ClientID: "feeder", CleanSession: true,
		ReconnectMaxInterval: time.Second})
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &feeder{pub: p}
}

func (f *feeder) mustSend(t *testing.T, msgs []simulate.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), longTimeout)
	defer cancel()
	for _, m := range msgs {
		if err := f.pub.Publish(ctx, m.Topic, m.Payload, 1, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
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
	e.waitFor(fmt.Sprintf("%d windows", len(want)), longTimeout, func() bool {
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
				// Retention may have removed it between the listing and now,
				// but only after removing the _metadata first.
				if _, err := s.Stat(t.Context(), appliance+"/"+upload.MetadataRel(id)); err == nil {
					t.Fatalf("remote checkpoint %d references missing object %s", id, k)
				}
			}
		}
	}
	return out
}
