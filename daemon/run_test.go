package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/storage/fileutil"
)

// These tests run the daemon in the test process: New, Run and Close, and
// the lock on data_dir.

// inProcessConfig is a small valid configuration: embedded broker and HTTP
// on free ports, one source, one filter stage, one file sink.
// extra is appended to the YAML.
func inProcessConfig(t *testing.T, dataDir string, extra ...string) *config.Config {
	t.Helper()
	return inProcessConfigBroker(t, dataDir, "embedded\n  embedded:\n    listen: \"127.0.0.1:0\"", extra...)
}

// inProcessConfigBroker is inProcessConfig with mqtt.broker set to broker
// (a URL, or "embedded" and its section).
func inProcessConfigBroker(t *testing.T, dataDir, broker string, extra ...string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf(`appliance_id: test
data_dir: %s
mqtt:
  broker: %s
sources:
  - name: readings
    topic: "sensors/#"
pipeline:
  parallelism: 1
  stages:
    - name: valid
      filter: "temperature > -50"
sinks:
  - name: out
    from: valid
    file:
      path: results.jsonl
state:
  memory:
    managed: 32MiB
checkpointing:
  interval: 1h
http:
  listen: "127.0.0.1:0"
`, dataDir, broker) + strings.Join(extra, "")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newDaemon(t *testing.T, dataDir string) *Daemon {
	t.Helper()
	d, err := New(inProcessConfig(t, dataDir), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// startRun runs d.Run on a goroutine; the channel gets its result.
func startRun(t *testing.T, d *Daemon) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("not ready within 60s")
	}
	return done
}

func runResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s")
		return nil
	}
}

// New opens and starts nothing: no broker, no publisher, no MQTT client,
// and no goroutine outlives it but the ingest log's group commit, which
// ingestlog.Open starts (the log is a store, and its fsync loop is its own).
func TestNewStartsNothing(t *testing.T) {
	before := goleak.IgnoreCurrent()
	d, err := New(inProcessConfig(t, t.TempDir()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := goleak.Find(before,
		goleak.IgnoreTopFunction("github.com/eddy-stream/eddy/storage/ingestlog.(*Log).background")); err != nil {
		t.Errorf("New left goroutines running: %v", err)
	}
	if d.broker != nil || len(d.publishers) != 0 || len(d.ingests) != 0 {
		t.Errorf("New started broker %v, publishers %v, ingests %v", d.broker, d.publishers, d.ingests)
	}
	if d.HTTPAddr() == "" {
		t.Error("New did not open the HTTP listener")
	}
}

// A second daemon on the same data_dir fails at once with the holder's
// PID; once the first is closed, the directory can be opened again. (Two
// flock(2)s on separately opened files conflict within one process too.)
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	first := newDaemon(t, dir)
	_, err := New(inProcessConfig(t, dir), nil, nil)
	var le *fileutil.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second New on %s: %v, want a *fileutil.LockedError", dir, err)
	}
	if le.PID != os.Getpid() || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("error %q (pid %d) does not name the holder, pid %d", err, le.PID, os.Getpid())
	}
	if le.Path != filepath.Join(dir, "LOCK") {
		t.Errorf("locked path %s, want %s", le.Path, filepath.Join(dir, "LOCK"))
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := New(inProcessConfig(t, dir), nil, nil)
	if err != nil {
		t.Fatalf("New after the holder closed: %v", err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
}

// A graceful stop ends Run with nil; Close, called at once from several
// goroutines while Run is returning, waits for it, is idempotent, and Run
// after Close refuses.
func TestStopThenCloseWhileRunReturns(t *testing.T) {
	d := newDaemon(t, t.TempDir())
	done := startRun(t, d)
	d.Stop()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = d.Close() })
	}
	if err := runResult(t, done); err != nil {
		t.Errorf("Run after Stop: %v", err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Close #%d: %v", i, err)
		}
	}
	if err := d.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
}

// With upload.remote set, the uploader actor starts once the job runs, a
// graceful stop ends Run with nil, and Close closes the uploader, also
// when Run never started it; no goroutine is left (TestMain's goleak).
func TestRunWithUploader(t *testing.T) {
	remote := t.TempDir()
	withUpload := "upload:\n  remote: file://" + remote + "\n"
	unrun, err := New(inProcessConfig(t, t.TempDir(), withUpload), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := unrun.Close(); err != nil {
		t.Fatalf("Close without Run: %v", err)
	}
	d, err := New(inProcessConfig(t, t.TempDir(), withUpload), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.upl == nil || d.upl.up == nil {
		t.Fatal("no uploader opened")
	}
	done := startRun(t, d)
	d.Stop()
	if err := runResult(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// Close interrupts a running group (a hard stop) and returns once Run has.
func TestCloseInterruptsRun(t *testing.T) {
	d := newDaemon(t, t.TempDir())
	done := startRun(t, d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Run's own end (runDone, closed as Run returns) must precede Close's
	// return; the goroutine of startRun sends Run's result after that, at
	// a time of the scheduler's choosing, so done is only waited on.
	select {
	case <-d.runDone:
	default:
		t.Fatal("Close returned before Run")
	}
	if err := runResult(t, done); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// A failed HTTP listener ends the group with its error.
func TestHTTPServeErrorEndsRun(t *testing.T) {
	d := newDaemon(t, t.TempDir())
	done := startRun(t, d)
	d.http.ln.Close() // Serve's Accept fails
	err := runResult(t, done)
	if err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Fatalf("Run: %v, want the HTTP serve error", err)
	}
}

// The stores write through the daemon's file system: its fsyncs reach
// eddy_fsync_duration_seconds.
func TestFsyncHistogram(t *testing.T) {
	count := func() uint64 {
		var m dto.Metric
		if err := fsyncSeconds.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	before := count()
	d := newDaemon(t, t.TempDir())
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if count() == before {
		t.Error("opening the data_dir fsynced nothing through the daemon's file system")
	}
}

// A start the supervisor refuses ends Run with the refusal even when
// another actor, one that ends when the supervisor has returned, ends the
// run group first (the group returns the first actor's result: nil).
func TestRefusedStartIsRunsError(t *testing.T) {
	dataDir := t.TempDir()
	start := func(keys string) (*Daemon, <-chan error) {
		d, _ := newDaemonYAML(t, reloadYAML(dataDir, keys, 1, "", ""))
		d.afterSupervised = func(interrupted <-chan struct{}) { <-interrupted }
		done := make(chan error, 1)
		go func() { done <- d.Run(context.Background()) }()
		return d, done
	}
	d, done := start("site, device")
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	}
	d.Stop() // the final checkpoint
	if err := runResult(t, done); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	d.Close()

	_, done = start("device")
	if err := runResult(t, done); err == nil || !strings.Contains(err.Error(), "key_by changed") {
		t.Fatalf("Run = %v, want the refused restore (key_by changed)", err)
	}
}
