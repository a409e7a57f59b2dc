package daemon

// Helpers for the tests that run the real eddy binary: build it once, write
// a configuration, start it with a captured JSON log, talk to its HTTP API
// on 127.0.0.1, publish readings with `eddy simulate`, and stop it.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	eddyBin   string
	buildErr  error
)

// binary builds cmd/eddy once per test run and returns its path; with
// EDDY_TEST_RACE set it is built with -race.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "eddy-daemon-test-")
		if buildErr != nil {
			return
		}
		eddyBin = filepath.Join(buildDir, "eddy")
		args := []string{"build", "-ldflags", "-X github.com/eddy-stream/eddy/daemon.Version=test", "-o", eddyBin}
		if os.Getenv("EDDY_TEST_RACE") != "" {
			args = append(args, "-race") // the binary under the race detector
		}
		cmd := exec.Command("go", append(args, "../cmd/eddy")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/eddy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return eddyBin
}

func removeBuild() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// testConfig is the variable part of the configuration the tests run.
type testConfig struct {
	DataDir  string
	Interval string // checkpointing.interval
	MinPause string
	Mode     string // exactly_once | at_least_once
	Level    string // log.level
	Window   string // window size of the keyed stage
	// Stateless: source → filter → file sink Out (no keyed stage).
	Stateless bool
	Out       string // file sink path
	Token     string
	Remote    string // upload.remote
}

func (c testConfig) yaml() string {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	var b strings.Builder
	fmt.Fprintf(&b, `appliance_id: test
data_dir: %s
mqtt:
  broker: embedded
  embedded:
    listen: "127.0.0.1:0"
sources:
  - name: readings
    topic: "sensors/+/+/telemetry"
    topic_fields: [null, site, device, null]
    event_time:
      field: ts
      max_out_of_orderness: 1s
pipeline:
  parallelism: 2
  stages:
    - name: valid
      filter: "temperature > -50 && temperature < 150"
`, c.DataDir)
	if !c.Stateless {
		fmt.Fprintf(&b, `    - name: per_device
      key_by: [site, device]
      window:
        type: tumbling
        size: %s
      aggregate:
        count: "count()"
        avg_temp: "avg(temperature)"
`, def(c.Window, "10s"))
	}
	from := "per_device"
	if c.Stateless {
		from = "valid"
	}
	fmt.Fprintf(&b, `sinks:
  - name: out
    from: %s
    file:
      path: %s
      max_size: 0
state:
  memory:
    managed: 32MiB
checkpointing:
  interval: %s
  min_pause: %s
  mode: %s
upload:
  remote: %q
http:
  listen: "127.0.0.1:0"
  token: %q
log:
  level: %s
  format: json
`, from, def(c.Out, "results.jsonl"), def(c.Interval, "1s"), def(c.MinPause, "100ms"),
		def(c.Mode, "exactly_once"), c.Remote, c.Token, def(c.Level, "info"))
	return b.String()
}

func writeConfig(t *testing.T, path string, c testConfig) {
	t.Helper()
	if err := os.WriteFile(path, []byte(c.yaml()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// logLine is one line of eddy's JSON log.
type logLine struct {
	raw  string
	at   time.Time // when the test read it
	attr map[string]any
}

func (l logLine) msg() string { s, _ := l.attr["msg"].(string); return s }

func (l logLine) str(k string) string {
	switch v := l.attr[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// eddyProc is one running eddy.
type eddyProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	exitErr error

	mu    sync.Mutex
	lines []logLine

	httpURL   string
	brokerURL string
}

// startEddy runs `eddy run -c cfg` with env added to a clean environment
// and waits until its HTTP API listens.
func startEddy(t *testing.T, cfg string, env ...string) *eddyProc {
	t.Helper()
	bin := binary(t)
	p := &eddyProc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "-c", cfg)
	p.cmd.Dir = filepath.Dir(cfg)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "NOTIFY_SOCKET", strings.HasPrefix(k, "WATCHDOG_"), k == "JOURNAL_STREAM",
			strings.HasPrefix(k, "EDDY_"), k == "LISTEN_FDS", k == "LISTEN_PID":
			continue
		}
		p.cmd.Env = append(p.cmd.Env, kv)
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.logPath = filepath.Join(filepath.Dir(cfg), fmt.Sprintf("eddy-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer logFile.Close()
		sc := bufio.NewScanner(io.TeeReader(stderr, logFile))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l := logLine{raw: sc.Text(), at: time.Now()}
			_ = json.Unmarshal(sc.Bytes(), &l.attr)
			p.mu.Lock()
			p.lines = append(p.lines, l)
			p.mu.Unlock()
		}
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.dumpLog()
		}
	})
	l := p.waitLog("HTTP API listening", 60*time.Second)
	p.httpURL = l.str("url")
	if l, ok := p.findLog("embedded MQTT broker listening"); ok {
		p.brokerURL = l.str("url")
	}
	return p
}

func (p *eddyProc) dumpLog() {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := max(0, len(p.lines)-150)
	p.t.Logf("eddy log (%s), last %d lines:", p.logPath, len(p.lines)-start)
	for _, l := range p.lines[start:] {
		p.t.Log("  " + l.raw)
	}
}

func (p *eddyProc) findLog(msg string) (logLine, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if l.msg() == msg {
			return l, true
		}
	}
	return logLine{}, false
}

// logsAfter returns the lines from index i on, and the next index.
func (p *eddyProc) logsAfter(i int) ([]logLine, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i = min(i, len(p.lines))
	return append([]logLine(nil), p.lines[i:]...), len(p.lines)
}

func (p *eddyProc) logCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// waitLog waits for a line whose msg is msg.
func (p *eddyProc) waitLog(msg string, timeout time.Duration) logLine {
	p.t.Helper()
	return p.waitLogFrom(0, msg, timeout)
}

func (p *eddyProc) waitLogFrom(from int, msg string, timeout time.Duration) logLine {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ls, _ := p.logsAfter(from)
		for _, l := range ls {
			if l.msg() == msg {
				return l
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("eddy exited (%v) before logging %q", p.exitErr, msg)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("eddy did not log %q within %s", msg, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *eddyProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit error.
func (p *eddyProc) wait(timeout time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(timeout):
		p.t.Fatalf("eddy did not exit within %s", timeout)
		return nil
	}
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// get decodes GET path into v and returns the status code.
func (p *eddyProc) get(path string, v any) int {
	p.t.Helper()
	resp, err := httpClient.Get(p.httpURL + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			p.t.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}

// eventually polls cond every 100 ms until it is true or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// simulate publishes readings with `eddy simulate` to broker.
func simulate(t *testing.T, broker string, args ...string) {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"simulate", "--broker", broker, "--client-id",
		fmt.Sprintf("sim-%d", time.Now().UnixNano())}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("eddy simulate %v: %v\n%s", args, err, out)
	}
}

// simulateInBackground publishes live readings (event time now) at rate
// per second until the test ends.
func simulateInBackground(t *testing.T, broker string, rate int) {
	t.Helper()
	cmd := exec.Command(binary(t), "simulate", "--broker", broker, "--client-id", fmt.Sprintf("sim-bg-%d", time.Now().UnixNano()),
		"--rate", fmt.Sprint(rate), "--devices", "20", "--sites", "4", "--start", "now", "--disorder", "500ms")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// ingested reports what the source task has read and the ingest lag.
func (p *eddyProc) ingested() (read int64, lag int64) {
	var o Overview
	if p.get("/api/v1/overview", &o) != http.StatusOK {
		return 0, -1
	}
	for _, t := range o.Tasks {
		if t.Kind == "source" {
			read += t.MessagesIn
		}
	}
	for _, in := range o.Ingest {
		lag += in.Lag
	}
	return read, lag
}
