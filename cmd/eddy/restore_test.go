package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
)

func restoreConfig(t *testing.T) (cfgPath string, layout datadir.Layout) {
	t.Helper()
	dir := t.TempDir()
	layout = datadir.New(filepath.Join(dir, "data"))
	remote := filepath.Join(dir, "remote")
	cfg := fmt.Sprintf(`appliance_id: box-1
data_dir: %q
mqtt:
  broker: tcp://127.0.0.1:1
sources:
  - name: readings
    topic: "sensors/+/telemetry"
pipeline:
  stages:
    - name: per_device
      key_by: [device]
      window: {type: tumbling, size: 10s}
      aggregate: {n: "count()"}
sinks:
  - name: results
    from: per_device
    file: {path: %q}
upload:
  remote: file://%s
`, layout.Root, filepath.Join(dir, "out.jsonl"), remote)
	cfgPath = filepath.Join(dir, "eddy.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, layout
}

func runRestore(cfgPath string) (string, error) {
	c := restoreCmd()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs([]string{"--config", cfgPath, "--from", "remote:latest"})
	err := c.Execute()
	return out.String(), err
}

// TestRestoreTakesTheLock: eddy restore on a data_dir another process
// holds fails, naming the holder's pid, and does nothing; once the lock
// is free it goes on (here to "no checkpoint" on an empty remote) and
// releases the lock again.
func TestRestoreTakesTheLock(t *testing.T) {
	cfgPath, layout := restoreConfig(t)
	if err := os.MkdirAll(layout.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	held, err := fileutil.Flock(layout.Lock())
	if err != nil {
		t.Fatal(err)
	}
	_, err = runRestore(cfgPath)
	if err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("restore on a locked data_dir: %v; want an error naming pid %d", err, os.Getpid())
	}
	if _, serr := os.Stat(layout.Checkpoints()); serr == nil {
		t.Fatalf("restore on a locked data_dir created %s", layout.Checkpoints())
	}
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}

	_, err = runRestore(cfgPath)
	if err == nil || !strings.Contains(err.Error(), "holds no checkpoint") {
		t.Fatalf("restore from an empty remote: %v", err)
	}
	again, err := fileutil.Flock(layout.Lock())
	if err != nil {
		t.Fatalf("restore did not release the lock: %v", err)
	}
	again.Release()
}
