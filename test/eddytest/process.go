package eddytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/pipeline"
)

// Process is one run of `eddy run`.
type Process struct {
	in       *Instance
	cmd      *exec.Cmd
	done     chan struct{}
	err      error // cmd.Wait's, once done is closed
	LogPath  string
	StartEnv []string // what Start added to the environment
}

// Pid is the process id (and the id of its process group).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is cmd.Wait's error once the process has ended (nil: exit 0).
func (p *Process) ExitErr() error {
	<-p.done
	return p.err
}

// Signaled reports whether the process has ended by sig.
func (p *Process) Signaled(sig syscall.Signal) bool {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return false
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// WaitReady waits until recovery is done: /healthz answers 200, or 503
// "degraded" (intake paused, which a restart into a full disk or spool is
// at once); it fails the
// test if eddy exits first or is not ready within ReadyTimeout.
func (p *Process) WaitReady() {
	p.in.TB.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		if p.Exited() {
			p.in.TB.Fatalf("eddy exited before it was ready: %v\n%s", p.err, Tail(p.LogPath, 40))
		}
		resp, err := p.in.client.Get(p.in.URL() + "/healthz")
		if err == nil {
			var h struct{ Status string }
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			// Ready is recovery done (READY=1): healthy, or degraded
			// because intake is paused (a full disk or spool) — a box
			// restarted into a sink outage is ready and paused at once.
			if resp.StatusCode == http.StatusOK || h.Status == "degraded" {
				return
			}
		}
		if time.Now().After(deadline) {
			p.in.TB.Fatalf("eddy not ready within %v (last error %v)\n%s", ReadyTimeout, err, Tail(p.LogPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Signal sends sig to the process (not its group).
func (p *Process) Signal(sig syscall.Signal) {
	p.in.TB.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.in.TB.Fatalf("signal %s: %v", sig, err)
	}
}

// WaitExit waits up to d for the process to end by itself.
func (p *Process) WaitExit(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Wait waits up to d for the process to end and returns its exit error; it
// fails the test if it does not end.
func (p *Process) Wait(d time.Duration) error {
	p.in.TB.Helper()
	if !p.WaitExit(d) {
		p.in.TB.Fatalf("eddy (pid %d) did not exit within %v", p.Pid(), d)
	}
	return p.err
}

// Stop sends SIGTERM and waits for a clean exit (status 0): the test fails
// otherwise.
func (p *Process) Stop() {
	p.in.TB.Helper()
	if p.Exited() {
		p.in.TB.Fatalf("stop: eddy is not running (exit %v)\n%s", p.err, Tail(p.LogPath, 40))
	}
	p.Signal(syscall.SIGTERM)
	if !p.WaitExit(ExitTimeout) {
		p.killWait()
		p.in.TB.Fatalf("eddy did not exit within %v of SIGTERM", ExitTimeout)
	}
	if p.err != nil {
		p.in.TB.Fatalf("eddy exited with %v after SIGTERM\n%s", p.err, Tail(p.LogPath, 40))
	}
}

// Kill sends SIGKILL to the process group and waits for the process; it
// does nothing if the process has ended.
func (p *Process) Kill() {
	p.in.TB.Helper()
	if !p.killWait() {
		p.in.TB.Fatalf("eddy (pid %d) did not die after SIGKILL", p.Pid())
	}
}

func (p *Process) killWait() bool {
	if p.Exited() {
		return true
	}
	syscall.Kill(-p.Pid(), syscall.SIGKILL)
	return p.WaitExit(ExitTimeout)
}

// DumpGoroutines makes the Go runtime of a running eddy write every
// goroutine's stack to its log (SIGQUIT ends it), for the post-mortem of a
// hang.
func (p *Process) DumpGoroutines() {
	if p.Exited() {
		return
	}
	syscall.Kill(p.Pid(), syscall.SIGQUIT)
	p.WaitExit(10 * time.Second)
}

// MustRun fails the test if the process has ended.
func (p *Process) MustRun() {
	p.in.TB.Helper()
	if p.Exited() {
		p.in.TB.Fatalf("eddy is not running (exit %v)\n%s", p.err, Tail(p.LogPath, 40))
	}
}

// WaitFor polls cond every PollEvery until it holds; it fails the test at
// the deadline d or when eddy has ended.
func (p *Process) WaitFor(what string, d time.Duration, cond func() bool) {
	p.in.TB.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		p.MustRun()
		if time.Now().After(deadline) {
			p.in.TB.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(PollEvery)
	}
}

// ---------------------------------------------------------------------------
// HTTP API

// GetJSON decodes GET path (200 only) into v.
func (p *Process) GetJSON(path string, v any) error {
	resp, err := p.in.client.Get(p.in.URL() + path)
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

// Get is GET path: it returns the status code and decodes a 200 answer into
// v (if not nil); a transport or decoding error fails the test.
func (p *Process) Get(path string, v any) int {
	p.in.TB.Helper()
	resp, err := p.in.client.Get(p.in.URL() + path)
	if err != nil {
		p.MustRun()
		p.in.TB.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			p.in.TB.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}

// MustGet is GetJSON that fails the test on an error.
func (p *Process) MustGet(path string, v any) {
	p.in.TB.Helper()
	if err := p.GetJSON(path, v); err != nil {
		p.MustRun()
		p.in.TB.Fatal(err)
	}
}

// mustGet is MustGet into a new T.
func mustGet[T any](p *Process, path string) T {
	p.in.TB.Helper()
	var v T
	p.MustGet(path, &v)
	return v
}

// Overview is GET /api/v1/overview.
func (p *Process) Overview() daemon.Overview {
	p.in.TB.Helper()
	return mustGet[daemon.Overview](p, "/api/v1/overview")
}

// Checkpoints is GET /api/v1/checkpoints.
func (p *Process) Checkpoints() pipeline.CheckpointsOverview {
	p.in.TB.Helper()
	return mustGet[pipeline.CheckpointsOverview](p, "/api/v1/checkpoints")
}

// LatestCompleted is the id of the newest completed checkpoint (0: none).
func (p *Process) LatestCompleted() int64 {
	p.in.TB.Helper()
	if c := p.Checkpoints().Latest.Completed; c != nil {
		return c.ID
	}
	return 0
}

// Upload is GET /api/v1/upload.
func (p *Process) Upload() daemon.RemoteStatus {
	p.in.TB.Helper()
	return mustGet[daemon.RemoteStatus](p, "/api/v1/upload")
}

// Trigger takes a checkpoint through the API (POST /api/v1/checkpoints) and
// returns its id; the test fails unless it completed.
func (p *Process) Trigger() int64 {
	p.in.TB.Helper()
	resp, err := p.in.client.Post(p.in.URL()+"/api/v1/checkpoints", "application/json", nil)
	if err != nil {
		p.MustRun()
		p.in.TB.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r daemon.TriggerResult
	if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != http.StatusOK || r.Status != "COMPLETED" {
		p.in.TB.Fatalf("POST /api/v1/checkpoints: %s: %s", resp.Status, body)
	}
	return r.ID
}

// Metrics is GET /metrics, as text.
func (p *Process) Metrics() string {
	p.in.TB.Helper()
	resp, err := p.in.client.Get(p.in.URL() + "/metrics")
	if err != nil {
		p.MustRun()
		p.in.TB.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		p.in.TB.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	return string(b)
}

// Client is the HTTP client of the instance, for requests the helpers above
// do not make.
func (p *Process) Client() *http.Client { return p.in.client }

// ---------------------------------------------------------------------------
// The log

// LogLine is one line of eddy's JSON log (log.format: json).
type LogLine struct {
	Raw  string
	Attr map[string]any // nil if the line is not JSON
}

// Msg is the line's message.
func (l LogLine) Msg() string { s, _ := l.Attr["msg"].(string); return s }

// Str is attribute k as text ("" if absent).
func (l LogLine) Str(k string) string {
	switch v := l.Attr[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// Logs are the complete lines the process has logged so far.
func (p *Process) Logs() []LogLine {
	data, _ := os.ReadFile(p.LogPath)
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	} else {
		return nil
	}
	var out []LogLine
	for _, line := range bytes.Split(data, []byte("\n")) {
		l := LogLine{Raw: string(line)}
		_ = json.Unmarshal(line, &l.Attr)
		out = append(out, l)
	}
	return out
}

// LogCount is the number of lines logged so far: a mark for WaitLog.
func (p *Process) LogCount() int { return len(p.Logs()) }

// FindLog returns the first line whose message is msg.
func (p *Process) FindLog(msg string) (LogLine, bool) {
	for _, l := range p.Logs() {
		if l.Msg() == msg {
			return l, true
		}
	}
	return LogLine{}, false
}

// WaitLog waits up to d for a line from line index from on whose message is
// msg; it fails the test if eddy ends first.
func (p *Process) WaitLog(from int, msg string, d time.Duration) LogLine {
	p.in.TB.Helper()
	deadline := time.Now().Add(d)
	for {
		exited := p.Exited() // before reading: the last lines count
		ls := p.Logs()
		for _, l := range ls[min(from, len(ls)):] {
			if l.Msg() == msg {
				return l
			}
		}
		if exited {
			p.in.TB.Fatalf("eddy exited (%v) before logging %q\n%s", p.err, msg, Tail(p.LogPath, 40))
		}
		if time.Now().After(deadline) {
			p.in.TB.Fatalf("eddy did not log %q within %s", msg, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
