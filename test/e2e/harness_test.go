package e2e

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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/mqtttest"
)

// eddyBin is the binary TestMain builds.
var eddyBin string

// Deadlines. CI is a slow 2-core box: they are generous, and only bound how
// long a test waits for a condition before it gives up.
const (
	readyTimeout   = 60 * time.Second
	resultsTimeout = 180 * time.Second
	exitTimeout    = 60 * time.Second
	pollEvery      = 100 * time.Millisecond
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eddy-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	root, err := moduleRoot()
	if err == nil {
		eddyBin = filepath.Join(dir, "eddy")
		cmd := exec.Command("go", "build", "-o", eddyBin, "./cmd/eddy")
		cmd.Dir = root
		if out, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("go build ./cmd/eddy in %s: %v\n%s", root, berr, out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// moduleRoot is the directory of go.mod: `go env GOMOD`, else ../.. from
// this package.
func moduleRoot() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("cannot find the module root: %w", err)
	}
	return root, nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

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
}

// windowStages: the demo's filter and map, then a keyed window over
// [site, device] with every aggregate function.
func windowStages(window string) string {
	return `    - name: valid
      filter: "temperature > -50 && temperature < 150"
    - name: converted
      map:
        temp_f: "temperature * 1.8 + 32"
    - name: per_device
      key_by: [site, device]
      window: ` + window + `
      aggregate:
        count: "count()"
        avg_temp: "avg(temperature)"
        max_temp: "max(temperature)"
        min_hum: "min(humidity)"
        sum_hum: "sum(humidity)"
        first_temp: "first(temperature)"
        last_temp: "last(temperature)"
        avg_temp_f: "avg(temp_f)"
`
}

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
// The eddy process

// proc is one run of the binary.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logPath string
	env     []string
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signaled reports whether the process was ended by sig.
func (p *proc) signaled(sig syscall.Signal) bool {
	if !p.exited() || p.cmd.ProcessState == nil {
		return false
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// eddy is one appliance: its configuration, data directory, HTTP address
// and the runs of the binary on them.
type eddy struct {
	t        *testing.T
	dir      string
	cfg      config
	cfgPath  string
	dataDir  string
	httpAddr string
	runs     []*proc
	http     *http.Client
}

func newEddy(t *testing.T, b *mqtttest.Broker, c config) *eddy {
	t.Helper()
	dir := t.TempDir()
	e := &eddy{
		t: t, dir: dir, cfg: c, cfgPath: filepath.Join(dir, "eddy.yaml"), dataDir: filepath.Join(dir, "data"),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		http:     &http.Client{Timeout: 30 * time.Second},
	}
	if err := os.WriteFile(e.cfgPath, []byte(c.render(e.dataDir, b.URL(), e.httpAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.killNow()
		if t.Failed() {
			e.dumpLogs()
			// For a post-mortem: E2E_KEEP_DIR=/some/dir keeps a failed
			// test's configuration, logs and data directory.
			if keep := os.Getenv("E2E_KEEP_DIR"); keep != "" {
				to := filepath.Join(keep, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
				if out, err := exec.Command("cp", "-a", dir, to).CombinedOutput(); err != nil {
					t.Logf("keep %s: %v %s", dir, err, out)
				} else {
					t.Logf("kept %s in %s", dir, to)
				}
			}
		}
		e.http.CloseIdleConnections()
	})
	return e
}

func (e *eddy) path(rel string) string { return filepath.Join(e.dataDir, rel) }

// cleanEnv is the test's environment without EDDY_* variables, which would
// override the configuration.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EDDY_") {
			env = append(env, kv)
		}
	}
	return env
}

// start runs `eddy run` in its own process group with stderr in a new log
// file. env adds variables (EDDY_FAILPOINTS=...).
func (e *eddy) start(env ...string) *proc {
	e.t.Helper()
	if p := e.current(); p != nil && !p.exited() {
		e.t.Fatalf("eddy is already running (pid %d)", p.cmd.Process.Pid)
	}
	logPath := filepath.Join(e.dir, fmt.Sprintf("eddy-%02d.log", len(e.runs)+1))
	f, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(eddyBin, "run", "--config", e.cfgPath)
	cmd.Dir = e.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(cleanEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start eddy: %v", err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), logPath: logPath, env: env}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	e.runs = append(e.runs, p)
	return p
}

func (e *eddy) current() *proc {
	if len(e.runs) == 0 {
		return nil
	}
	return e.runs[len(e.runs)-1]
}

// startReady starts eddy and waits until /healthz answers 200.
func (e *eddy) startReady(env ...string) *proc {
	e.t.Helper()
	p := e.start(env...)
	e.waitReady(p)
	return p
}

func (e *eddy) waitReady(p *proc) {
	e.t.Helper()
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
			e.t.Fatalf("eddy not ready within %v (last error %v)", readyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL to eddy's process group and waits for it.
func (e *eddy) kill() {
	e.t.Helper()
	p := e.current()
	if p == nil || p.exited() {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		e.t.Fatalf("eddy (pid %d) did not die after SIGKILL", p.cmd.Process.Pid)
	}
}

// killNow is kill for t.Cleanup: no Fatal.
func (e *eddy) killNow() {
	for _, p := range e.runs {
		if !p.exited() {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(exitTimeout):
			}
		}
	}
}

// stop sends SIGTERM and waits for a clean exit (status 0).
func (e *eddy) stop() {
	e.t.Helper()
	p := e.current()
	if p == nil || p.exited() {
		e.t.Fatalf("stop: eddy is not running")
	}
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		e.kill()
		e.t.Fatalf("eddy did not exit within %v of SIGTERM", exitTimeout)
	}
	if p.waitErr != nil {
		e.t.Fatalf("eddy exited with %v after SIGTERM\n%s", p.waitErr, tail(p.logPath, 40))
	}
}

// waitExit waits up to d for the current run to end by itself.
func (e *eddy) waitExit(d time.Duration) bool {
	p := e.current()
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// dumpGoroutines makes the Go runtime of a running eddy write every
// goroutine's stack to its log (SIGQUIT), for the post-mortem of a hang.
func (e *eddy) dumpGoroutines() {
	p := e.current()
	if p == nil || p.exited() {
		return
	}
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// mustRun fails the test when the current run has exited.
func (e *eddy) mustRun() {
	e.t.Helper()
	if p := e.current(); p == nil || p.exited() {
		var err error
		var lp string
		if p != nil {
			err, lp = p.waitErr, p.logPath
		}
		e.t.Fatalf("eddy is not running (exit: %v)\n%s", err, tail(lp, 40))
	}
}

// logRecords decodes the JSON log lines of run p.
func logRecords(p *proc) []map[string]any {
	data, _ := os.ReadFile(p.logPath)
	var out []map[string]any
	for _, line := range bytes.Split(data, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func (e *eddy) dumpLogs() {
	const maxRuns = 3
	for i, p := range e.runs {
		if i < len(e.runs)-maxRuns {
			// Older runs: errors and warnings only.
			var lines []string
			for _, line := range strings.Split(tail(p.logPath, 100000), "\n") {
				if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
					lines = append(lines, line)
				}
			}
			if len(lines) > 15 {
				lines = lines[len(lines)-15:]
			}
			e.t.Logf("eddy run %d (%s, env %v, exit %v): warnings and errors:\n%s", i+1, p.logPath, p.env, p.waitErr, strings.Join(lines, "\n"))
			continue
		}
		e.t.Logf("eddy run %d (%s, env %v, exit %v), log tail:\n%s", i+1, p.logPath, p.env, p.waitErr, tail(p.logPath, 80))
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	if path == "" {
		return ""
	}
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

// ---------------------------------------------------------------------------
// HTTP API (decoded into local types: the test checks the wire format)

type ingestOverview struct {
	Source     string `json:"source"`
	Connected  bool   `json:"connected"`
	Received   int64  `json:"messages_received"`
	Acked      int64  `json:"messages_acknowledged"`
	NextOffset uint64 `json:"next_offset"`
	ReadOffset uint64 `json:"read_offset"`
	Lag        int64  `json:"lag"`
	Error      string `json:"error"`
}

type overview struct {
	Running     bool             `json:"running"`
	JobRestarts int              `json:"job_restarts"`
	LastError   string           `json:"last_error"`
	DeadLetters int64            `json:"dead_letters"`
	LateEvents  int64            `json:"late_events"`
	Ingest      []ingestOverview `json:"ingest"`
	Tasks       []struct {
		Name        string `json:"name"`
		Kind        string `json:"kind"`
		Watermark   *int64 `json:"watermark"`
		RecordsIn   int64  `json:"records_in"`
		MessagesIn  int64  `json:"messages_in"`
		DeadLetters int64  `json:"dead_letters"`
		LateEvents  int64  `json:"late_events"`
	} `json:"tasks"`
}

type subtaskStats struct {
	Index      int    `json:"index"`
	Task       string `json:"task"`
	Status     string `json:"status"`
	StartDelay *int64 `json:"start_delay"`
	Alignment  *struct {
		Duration  *int64 `json:"duration"`
		Processed *int64 `json:"processed"`
	} `json:"alignment"`
	Checkpoint *struct {
		Sync  *int64 `json:"sync"`
		Async *int64 `json:"async"`
	} `json:"checkpoint"`
	StateSize        *int64 `json:"state_size"`
	CheckpointedSize *int64 `json:"checkpointed_size"`
}

type cpStats struct {
	ID             int64  `json:"id"`
	Status         string `json:"status"`
	NumSubtasks    int    `json:"num_subtasks"`
	NumAcked       int    `json:"num_acknowledged_subtasks"`
	StateSize      int64  `json:"state_size"`
	FailureMessage string `json:"failure_message"`
	Tasks          map[string]*struct {
		NumSubtasks          int            `json:"num_subtasks"`
		MaxAlignmentDuration int64          `json:"max_alignment_duration"`
		Subtasks             []subtaskStats `json:"subtasks"`
	} `json:"tasks"`
}

type cpOverview struct {
	Counts struct {
		Restored   int64 `json:"restored"`
		Total      int64 `json:"total"`
		InProgress int64 `json:"in_progress"`
		Completed  int64 `json:"completed"`
		Failed     int64 `json:"failed"`
	} `json:"counts"`
	Latest struct {
		Completed *cpStats `json:"completed"`
		Failed    *cpStats `json:"failed"`
		Restored  *struct {
			ID     int64  `json:"id"`
			Source string `json:"source"`
		} `json:"restored"`
	} `json:"latest"`
	History []cpStats `json:"history"`
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
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w: %s", path, err, body)
	}
	return nil
}

func (e *eddy) overview() overview {
	e.t.Helper()
	var o overview
	if err := e.getJSON("/api/v1/overview", &o); err != nil {
		e.mustRun()
		e.t.Fatal(err)
	}
	return o
}

func (e *eddy) checkpoints() cpOverview {
	e.t.Helper()
	var o cpOverview
	if err := e.getJSON("/api/v1/checkpoints", &o); err != nil {
		e.mustRun()
		e.t.Fatal(err)
	}
	return o
}

// trigger takes a checkpoint through the API and returns its id.
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
		Error  string `json:"error"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != http.StatusOK || r.Status != "COMPLETED" {
		e.t.Fatalf("POST /api/v1/checkpoints: %s: %s", resp.Status, body)
	}
	return r.ID
}

// waitFor polls cond until it holds; it fails the test at the deadline or
// when eddy has exited.
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

// waitCaughtUp waits until every source has read its whole ingest log and
// has received at least want[source] messages in this run (0: any).
func (e *eddy) waitCaughtUp(want map[string]int64) {
	e.t.Helper()
	e.waitFor("the sources to read every message", resultsTimeout, func() bool {
		o := e.overview()
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
// the second is published.
func (e *eddy) quiesce() {
	e.t.Helper()
	e.waitCaughtUp(nil)
	e.trigger()
	id := e.trigger()
	e.waitFor(fmt.Sprintf("checkpoint %d to be published", id), resultsTimeout, func() bool {
		for _, n := range completedCheckpoints(e.t, e.path("checkpoints")) {
			if n >= id {
				if _, err := os.Stat(filepath.Join(e.path("checkpoints"), fmt.Sprintf("chk-%d", n), "_published")); err == nil {
					return true
				}
			}
		}
		return false
	})
}

// completedCheckpoints lists the ids of chk-N directories with _metadata.
func completedCheckpoints(t testing.TB, dir string) []int64 {
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
// Feeding

// feeder publishes test input to mosquitto at QoS 1.
type feeder struct {
	pub *mqttio.Publisher
}

func newFeeder(t *testing.T, b *mqtttest.Broker, clientID string) *feeder {
	t.Helper()
	p := mqttio.NewPublisher(mqttio.ClientOptions{
		Broker: b.URL(), ClientID: clientID, CleanSession: true, ReconnectMaxInterval: time.Second,
	})
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &feeder{pub: p}
}

// send publishes msgs in order and waits for every PUBACK.
func (f *feeder) send(msgs []simulate.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), resultsTimeout)
	defer cancel()
	for _, m := range msgs {
		if err := f.pub.Publish(ctx, m.Topic, m.Payload, 1, false); err != nil {
			return err
		}
	}
	return f.pub.Flush(ctx)
}

func (f *feeder) mustSend(t *testing.T, msgs []simulate.Message) {
	t.Helper()
	if err := f.send(msgs); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// probeTS is the event time of probe readings: before any stream.
var probeTS = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// probe makes sure eddy's persistent session subscribes to every source's
// topic before the test publishes: it publishes a reading the "valid"
// filter drops (temperature 999) until each source has received one.
// prefixes are the first topic levels of the sources, in order.
func (e *eddy) probe(f *feeder, prefixes ...string) {
	e.t.Helper()
	if len(prefixes) == 0 {
		prefixes = []string{"sensors"}
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		o := e.overview()
		got := 0
		for i, in := range o.Ingest {
			if i < len(prefixes) && in.Received > 0 {
				got++
			}
		}
		if got == len(prefixes) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("eddy did not receive a probe within %v: %+v", readyTimeout, o.Ingest)
		}
		for i, pre := range prefixes {
			if i < len(o.Ingest) && o.Ingest[i].Received > 0 {
				continue
			}
			payload := fmt.Sprintf(`{"device":"_probe","site":"site-1","ts":%d,"temperature":999,"humidity":0}`, probeTS)
			if err := f.send([]simulate.Message{{Topic: pre + "/site-1/_probe/telemetry", Payload: []byte(payload)}}); err != nil {
				e.t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Reading sinks

// readLines returns the complete lines of a JSON-lines file, and the
// trailing partial line, if any.
func readLines(path string) (lines []string, partial string, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 8<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(data) > 0 && data[len(data)-1] != '\n' && len(lines) > 0 {
		partial = lines[len(lines)-1]
		lines = lines[:len(lines)-1]
	}
	return lines, partial, sc.Err()
}
