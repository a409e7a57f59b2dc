package service

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/test/eddytest"
)

func TestMain(m *testing.M) { eddytest.Main(m) }

// testConfig is the variable part of the configuration the tests run.
type testConfig struct {
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

// yaml renders c for instance in: an embedded broker on a free port, the
// HTTP API on in.HTTPAddr.
func (c testConfig) yaml(in *eddytest.Instance) string {
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
`, in.DataDir)
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
  listen: %q
  token: %q
log:
  level: %s
  format: json
`, from, def(c.Out, "results.jsonl"), def(c.Interval, "1s"), def(c.MinPause, "100ms"),
		def(c.Mode, "exactly_once"), c.Remote, in.HTTPAddr, c.Token, def(c.Level, "info"))
	return b.String()
}

// eddy is one appliance of these tests on the harness; BrokerURL is its
// embedded broker's address, known once a run has logged it.
type eddy struct {
	*eddytest.Instance
	BrokerURL string
}

func newEddy(t *testing.T, c testConfig) *eddy {
	t.Helper()
	return &eddy{Instance: eddytest.New(t, eddytest.Config{YAML: c.yaml})}
}

// writeConfig replaces the configuration with c.
func (e *eddy) writeConfig(c testConfig) { e.WriteConfig(c.yaml(e.Instance)) }

// start runs eddy with env added and waits until its HTTP API and its
// embedded broker listen (not for READY: the systemd tests watch that).
func (e *eddy) start(env ...string) *eddytest.Process {
	e.TB.Helper()
	p := e.Start(env...)
	p.WaitLog(0, "HTTP API listening", eddytest.ReadyTimeout)
	e.BrokerURL = p.WaitLog(0, "embedded MQTT broker listening", eddytest.ReadyTimeout).Str("url")
	return p
}

// simulate publishes readings with `eddy simulate` to the embedded broker.
func (e *eddy) simulate(args ...string) {
	e.TB.Helper()
	args = append([]string{"simulate", "--broker", e.BrokerURL, "--client-id", fmt.Sprintf("sim-%d", time.Now().UnixNano())}, args...)
	if out, err := e.Command(args...); err != nil {
		e.TB.Fatalf("eddy %v: %v\n%s", args, err, out)
	}
}

// simulateInBackground publishes live readings (event time now) at rate
// per second until the test ends.
func (e *eddy) simulateInBackground(rate int) {
	e.TB.Helper()
	cmd := exec.Command(eddytest.Binary(e.TB), "simulate", "--broker", e.BrokerURL, "--client-id", fmt.Sprintf("sim-bg-%d", time.Now().UnixNano()),
		"--rate", fmt.Sprint(rate), "--devices", "20", "--sites", "4", "--start", "now", "--disorder", "500ms")
	cmd.Env = eddytest.CleanEnv()
	if err := cmd.Start(); err != nil {
		e.TB.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	e.TB.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// ingested reports what the source task has read and the ingest lag (-1
// when the API does not answer).
func ingested(p *eddytest.Process) (read int64, lag int64) {
	var o daemon.Overview
	if p.GetJSON("/api/v1/overview", &o) != nil {
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

// waitRead waits until the source has read n messages and the ingest log
// holds no more.
func waitRead(p *eddytest.Process, n int64, d time.Duration) {
	p.WaitFor(fmt.Sprintf("%d messages read", n), d, func() bool {
		read, lag := ingested(p)
		return read == n && lag == 0
	})
}
