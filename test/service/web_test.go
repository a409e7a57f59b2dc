package service

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	chromiumtest "github.com/eddy-stream/eddy/test/chromium"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/eddy-stream/eddy/daemon"
	"github.com/eddy-stream/eddy/pipeline"
)

// artifacts is where tests keep files for a person to look at
// (gitignored).
const artifacts = "../artifacts"

// chromium loads url in headless Chromium (test/chromium).
func chromium(t *testing.T, url string, flags ...string) string {
	t.Helper()
	return chromiumtest.Run(t, url, flags...)
}

// TestWebPage loads the page in headless Chromium once checkpoints have
// completed: the overview lists the tasks, the checkpoints view shows the
// history and a checkpoint's per-task details. Screenshots are kept in
// test/artifacts/.
func TestWebPage(t *testing.T) {
	e := newEddy(t, testConfig{Interval: "1s", Remote: "file://" + filepath.Join(t.TempDir(), "remote")})
	p := e.start()
	e.simulateInBackground(400)
	var cps pipeline.CheckpointsOverview
	p.WaitFor("3 completed checkpoints with input", 30*time.Second, func() bool {
		p.Get("/api/v1/checkpoints", &cps)
		read, _ := ingested(p)
		return cps.Counts.Completed >= 3 && read > 1000
	})
	var remote daemon.RemoteStatus
	if code := p.Get("/api/v1/upload", &remote); code != http.StatusOK || !strings.HasPrefix(remote.Remote, "file://") {
		t.Errorf("GET /api/v1/upload: %d %+v", code, remote)
	}
	last := cps.Latest.Completed.ID

	dom := chromium(t, e.URL()+"/#checkpoints/"+fmt.Sprint(last), "--dump-dom")
	history := regexp.MustCompile(`(?s)<table id="cp-history">.*?</table>`).FindString(dom)
	if history == "" {
		t.Fatalf("no checkpoint history table in the page:\n%s", dom)
	}
	rows := regexp.MustCompile(`<tr class="clickable[^"]*" data-id="(\d+)">`).FindAllStringSubmatch(history, -1)
	if len(rows) < 3 || !strings.Contains(history, "COMPLETED") || !strings.Contains(history, fmt.Sprintf("#%d<", last)) {
		t.Fatalf("history shows %d checkpoints, want at least 3 COMPLETED ones with #%d:\n%s", len(rows), last, history)
	}
	details := regexp.MustCompile(`(?s)<table id="cp-tasks">.*?</table>`).FindString(dom)
	for _, want := range []string{"per_device", "per_device-1", "source-readings", "Start delay", "Alignment", "Sync", "Async"} {
		if !strings.Contains(details, want) {
			t.Errorf("checkpoint details lack %q:\n%s", want, details)
		}
	}
	for _, want := range []string{"Summary", "p99", "End to end duration", "Newest remote checkpoint"} {
		if !strings.Contains(dom, want) {
			t.Errorf("checkpoints view lacks %q", want)
		}
	}

	dom = chromium(t, e.URL()+"/#overview", "--dump-dom")
	for _, want := range []string{"source-readings", "per_device-0", "readings", "connected", "Throughput"} {
		if !strings.Contains(dom, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	dom = chromium(t, e.URL()+"/#config", "--dump-dom")
	if !strings.Contains(dom, "max_out_of_orderness") || !strings.Contains(dom, "EmbeddedRocksDBStateBackend") {
		t.Errorf("configuration view lacks the running configuration")
	}

	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web-overview.png", "web-checkpoints.png", "web-config.png"} {
		frag := "#" + strings.TrimSuffix(strings.TrimPrefix(name, "web-"), ".png")
		if frag == "#checkpoints" {
			p.Get("/api/v1/checkpoints", &cps) // the newest, so that its details are still in the history
			frag += "/" + fmt.Sprint(cps.Latest.Completed.ID)
		}
		path, _ := filepath.Abs(filepath.Join(artifacts, name))
		chromium(t, e.URL()+"/"+frag, "--screenshot="+path)
		if st, err := os.Stat(path); err != nil || st.Size() < 10_000 {
			t.Errorf("screenshot %s: %v", path, err)
		}
		t.Logf("screenshot: %s", path)
	}
}

// TestMetrics parses /metrics with the Prometheus text-format parser and
// checks the families the issue asks for.
func TestMetrics(t *testing.T) {
	e := newEddy(t, testConfig{Interval: "500ms"})
	p := e.start()
	e.simulate("--count", "3000", "--rate", "0", "--devices", "10", "--interval", "10ms",
		"--start", "2024-01-01T00:00:00Z", "--bad", "0.01")
	p.WaitFor("2 completed checkpoints after the input", 30*time.Second, func() bool {
		var cps pipeline.CheckpointsOverview
		p.Get("/api/v1/checkpoints", &cps)
		read, lag := ingested(p)
		return read == 3000 && lag == 0 && cps.Counts.Completed >= 2
	})
	time.Sleep(time.Second) // one more checkpoint covers everything read

	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(p.Metrics()))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(m *dto.Metric) float64 {
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
		return m.GetUntyped().GetValue()
	}
	// name → minimum number of series; every family must exist.
	want := map[string]int{
		"eddy_build_info":                                  1,
		"eddy_ready":                                       1,
		"eddy_pipeline_stalled":                            1,
		"eddy_job_running":                                 1,
		"eddy_checkpoints_triggered_total":                 1,
		"eddy_checkpoints_completed_total":                 1,
		"eddy_checkpoints_failed_total":                    1,
		"eddy_checkpoints_in_progress":                     1,
		"eddy_checkpoints_restored_total":                  1,
		"eddy_last_checkpoint_id":                          1,
		"eddy_last_checkpoint_duration_seconds":            1,
		"eddy_last_checkpoint_state_size_bytes":            1,
		"eddy_last_checkpoint_checkpointed_size_bytes":     1,
		"eddy_last_checkpoint_completed_timestamp_seconds": 1,
		"eddy_last_checkpoint_start_delay_seconds":         3,
		"eddy_last_checkpoint_alignment_seconds":           3,
		"eddy_last_checkpoint_sync_seconds":                3,
		"eddy_last_checkpoint_async_seconds":               3,
		"eddy_restore_duration_seconds":                    1,
		"eddy_task_records_in_total":                       3,
		"eddy_task_records_out_total":                      3,
		"eddy_task_back_pressured_seconds_total":           3,
		"eddy_task_watermark_lag_seconds":                  3,
		"eddy_task_dead_letters_total":                     3,
		"eddy_ingest_log_size_bytes":                       1,
		"eddy_ingest_log_lag_messages":                     1,
		"eddy_rocksdb_block_cache_usage_bytes":             1,
		"eddy_rocksdb_block_cache_capacity_bytes":          1,
		"eddy_rocksdb_memtable_bytes":                      2,
		"eddy_rocksdb_live_sst_bytes":                      2,
	}
	for name, n := range want {
		f := fams[name]
		if f == nil {
			t.Errorf("/metrics lacks %s", name)
			continue
		}
		if len(f.Metric) < n {
			t.Errorf("%s has %d series, want at least %d", name, len(f.Metric), n)
		}
	}
	sum := func(name string) float64 {
		s := 0.0
		for _, m := range fams[name].GetMetric() {
			s += value(m)
		}
		return s
	}
	if v := sum("eddy_checkpoints_completed_total"); v < 2 {
		t.Errorf("eddy_checkpoints_completed_total = %v, want >= 2", v)
	}
	if v := sum("eddy_ready"); v != 1 {
		t.Errorf("eddy_ready = %v", v)
	}
	if v := sum("eddy_task_dead_letters_total"); v < 1 {
		t.Errorf("eddy_task_dead_letters_total = %v, want the bad messages counted", v)
	}
	if v := sum("eddy_rocksdb_memtable_bytes"); v <= 0 {
		t.Errorf("eddy_rocksdb_memtable_bytes = %v, want > 0", v)
	}
	if v := sum("eddy_last_checkpoint_state_size_bytes"); v <= 0 {
		t.Errorf("eddy_last_checkpoint_state_size_bytes = %v, want > 0", v)
	}
	for _, m := range fams["eddy_last_checkpoint_start_delay_seconds"].GetMetric() {
		if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "task" {
			t.Errorf("start delay series without a task label: %v", m)
		}
	}
	t.Logf("%d metric families", len(fams))
}
