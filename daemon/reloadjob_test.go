package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/storage/savepoint"
)

// reloadYAML is a configuration with a keyed stage per_device (key_by
// keys), a file sink on it and extra sinks and stages appended.
func reloadYAML(dataDir, keys string, parallelism int, stages, sinks string) string {
	return fmt.Sprintf(`appliance_id: test
data_dir: %s
mqtt:
  broker: embedded
  embedded:
    listen: "127.0.0.1:0"
sources:
  - name: readings
    topic: "sensors/+/+/telemetry"
    topic_fields: [null, site, device, null]
pipeline:
  parallelism: %d
  stages:
    - name: per_device
      key_by: [%s]
      window: {type: tumbling, size: 10s}
      aggregate:
        count: "count()"
%ssinks:
  - name: out
    from: per_device
    file:
      path: results.jsonl
%sstate:
  memory:
    managed: 32MiB
checkpointing:
  interval: 1h
http:
  listen: "127.0.0.1:0"
`, dataDir, parallelism, keys, stages, sinks)
}

const perSiteYAML = `    - name: per_site
      key_by: [site]
      window: {type: tumbling, size: 10s}
      aggregate:
        count: "count()"
`

// startReloadable runs a daemon on yaml written to a file it reloads; it
// returns the daemon and the file.
func startReloadable(t *testing.T, yaml string) (*Daemon, string) {
	t.Helper()
	d, path := newDaemonYAML(t, yaml)
	d.SetConfigFile(path)
	done := startRun(t, d)
	t.Cleanup(func() {
		d.Stop()
		if err := runResult(t, done); err != nil {
			t.Errorf("Run: %v", err)
		}
		d.Close()
	})
	return d, path
}

// newDaemonYAML writes yaml to a config file and returns a new daemon on
// it (closed at the end of the test) and the file.
func newDaemonYAML(t *testing.T, yaml string) (*Daemon, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	rewrite(t, path, yaml)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func rewrite(t *testing.T, path, yaml string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
}

func taskNames(d *Daemon) []string {
	var out []string
	for _, t := range d.currentJob().Overview() {
		out = append(out, t.Name)
	}
	return out
}

// An added keyed stage, an added sink and another parallelism: the reload
// stops the job with a savepoint and runs the new one restored from it;
// the overview says so.
func TestReloadPipelineApplied(t *testing.T) {
	dir := t.TempDir()
	d, path := startReloadable(t, reloadYAML(dir, "site, device", 1, "", ""))
	old := d.currentJob()
	rewrite(t, path, reloadYAML(dir, "site, device", 2, perSiteYAML,
		"  - name: sites\n    from: per_site\n    file:\n      path: sites.jsonl\n"))
	res, err := d.Reload()
	if err != nil {
		t.Fatalf("Reload: %v (%+v)", err, res)
	}
	if len(res.Refused) != 0 || !slices.Contains(res.Applied, "pipeline.parallelism") || res.Savepoint == "" {
		t.Fatalf("Reload = %+v, want pipeline keys applied with a savepoint", res)
	}
	if d.currentJob() == old {
		t.Fatal("the job was not rebuilt")
	}
	if names := taskNames(d); !slices.Contains(names, "per_site-1") || !slices.Contains(names, "per_device-1") {
		t.Errorf("tasks after the reload: %v, want per_site and per_device at parallelism 2", names)
	}
	if d.sinks["sites"] == nil {
		t.Error("the added sink was not opened")
	}
	if _, err := savepoint.Load(filepath.Join(dir, "savepoints", res.Savepoint)); err != nil {
		t.Errorf("the reload's savepoint: %v", err)
	}
	if r := d.running(); r.Pipeline.Parallelism != 2 || len(r.Sinks) != 2 {
		t.Errorf("running configuration: parallelism %d, %d sinks", r.Pipeline.Parallelism, len(r.Sinks))
	}
	lr := d.overview().LastReload
	if lr == nil || lr.Outcome != "applied" || lr.Savepoint != res.Savepoint || !slices.Contains(lr.Keys, "pipeline.parallelism") {
		t.Errorf("last_reload = %+v", lr)
	}

	// Removing the sink again closes it.
	rewrite(t, path, reloadYAML(dir, "site, device", 2, perSiteYAML, ""))
	if res, err := d.Reload(); err != nil || !slices.Contains(res.Applied, "sinks") {
		t.Fatalf("Reload removing a sink: %+v, %v", res, err)
	}
	if d.sinks["sites"] != nil {
		t.Error("the removed sink is still open")
	}
}

// A changed key_by does not fit the running state: refused with the words
// of a refused restore, the running job untouched.
func TestReloadPipelineRefused(t *testing.T) {
	dir := t.TempDir()
	d, path := startReloadable(t, reloadYAML(dir, "site, device", 1, "", ""))
	old := d.currentJob()
	rewrite(t, path, reloadYAML(dir, "device", 1, "", ""))
	res, err := d.Reload()
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if len(res.Refused) == 0 || len(res.Reasons) != 1 || !strings.Contains(res.Reasons[0], "key_by changed from [site device] to [device]") ||
		res.Savepoint != "" {
		t.Errorf("Reload = %+v, want refused with the key_by reason", res)
	}
	if d.currentJob() != old {
		t.Error("the running job was replaced")
	}
	if len(d.running().Pipeline.Stages[0].KeyBy) != 2 {
		t.Error("the running configuration changed")
	}
	if lr := d.lastReload(); lr == nil || lr.Outcome != "refused" || !strings.Contains(lr.Reason, "key_by changed") {
		t.Errorf("last_reload = %+v", lr)
	}
	if es, _ := os.ReadDir(filepath.Join(dir, "savepoints")); len(es) != 0 {
		t.Errorf("a refused reload took a savepoint: %v", es)
	}

	// With a change that needs a restart, a fitting pipeline change is
	// refused too.
	y := reloadYAML(dir, "site, device", 2, "", "")
	rewrite(t, path, strings.Replace(y, "topic: \"sensors/+/+/telemetry\"", "topic: \"other/+/+/telemetry\"", 1))
	res, err = d.Reload()
	if err != nil || !slices.Contains(res.Refused, "pipeline.parallelism") || !slices.Contains(res.Refused, "sources[0].topic") {
		t.Errorf("Reload with a source change = %+v, %v; want both refused", res, err)
	}
	if d.currentJob() != old {
		t.Error("the running job was replaced")
	}
}

// A change that passes the checks but whose job does not start (its new
// sink cannot be opened): the previous pipeline runs again, restored from
// the savepoint, and the reload fails.
func TestReloadPipelineFallback(t *testing.T) {
	dir := t.TempDir()
	d, path := startReloadable(t, reloadYAML(dir, "site, device", 1, "", ""))
	blocked := filepath.Join(dir, "blocked")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rewrite(t, path, reloadYAML(dir, "site, device", 1, perSiteYAML,
		"  - name: sites\n    from: per_site\n    file:\n      path: blocked/sites.jsonl\n"))
	res, err := d.Reload()
	if !errors.Is(err, ErrReloadFailed) || res.Savepoint == "" || !slices.Contains(res.Refused, "sinks") {
		t.Fatalf("Reload = %+v, %v; want ErrReloadFailed after a savepoint", res, err)
	}
	if !strings.Contains(err.Error(), "runs the previous pipeline again") {
		t.Errorf("err = %v", err)
	}
	if d.currentJob() == nil || slices.Contains(taskNames(d), "per_site-0") {
		t.Errorf("after the failed reload the job is %v, want the previous pipeline", taskNames(d))
	}
	if r := d.running(); len(r.Sinks) != 1 || len(r.Pipeline.Stages) != 1 {
		t.Errorf("running configuration after the failed reload: %d sinks, %d stages", len(r.Sinks), len(r.Pipeline.Stages))
	}
	if d.sinks["out"] == nil || d.sinks["sites"] != nil {
		t.Errorf("sinks after the failed reload: %v", d.sinks)
	}
	if lr := d.lastReload(); lr == nil || lr.Outcome != "failed" || lr.Savepoint != res.Savepoint {
		t.Errorf("last_reload = %+v", lr)
	}
}

func TestJobKey(t *testing.T) {
	for k, want := range map[string]bool{
		"pipeline.parallelism": true, "pipeline.stages": true, "pipeline.stages[1].window.size": true,
		"sinks": true, "sinks[0].file.path": true, "checkpointing.allow_non_restored_state": true,
		"sources[0].topic": false, "sinksx": false, "checkpointing.mode": false, "state.timers": false,
	} {
		if got := jobKey(k); got != want {
			t.Errorf("jobKey(%q) = %v, want %v", k, got, want)
		}
	}
}

// Without checkpointing there is no savepoint to carry the state: a
// pipeline change is refused, naming why.
func TestReloadPipelineNeedsCheckpointing(t *testing.T) {
	dir := t.TempDir()
	off := func(y string) string { return strings.Replace(y, "interval: 1h", "interval: 0s", 1) }
	d, path := startReloadable(t, off(reloadYAML(dir, "site, device", 1, "", "")))
	old := d.currentJob()
	rewrite(t, path, off(reloadYAML(dir, "site, device", 2, "", "")))
	res, err := d.Reload()
	if err != nil || len(res.Reasons) != 1 || !strings.Contains(res.Reasons[0], "checkpointing is off") ||
		!slices.Contains(res.Refused, "pipeline.parallelism") {
		t.Errorf("Reload = %+v, %v; want refused because checkpointing is off", res, err)
	}
	if d.currentJob() != old {
		t.Error("the running job was replaced")
	}
}
