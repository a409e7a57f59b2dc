package daemon

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon/plan"
)

// The daemon shows the latest plan: nothing before one, then the four
// gauges in /metrics, the headroom in the overview and GET /api/v1/plan.
// Without live input the headroom, ride-out and disk fill are -1 (never)
// and the catch-up is the restore alone.
func TestHeadroomFromLatestPlan(t *testing.T) {
	dir := t.TempDir()
	d := newDaemon(t, dir)
	if h := d.headroom(); h != nil {
		t.Fatalf("headroom before any plan: %+v", h)
	}
	rec := httptest.NewRecorder()
	d.handlePlan(rec, httptest.NewRequest(http.MethodGet, "/api/v1/plan", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /api/v1/plan before a plan: %d", rec.Code)
	}
	rep := &plan.Report{Version: 1, Time: time.Now().UTC()}
	rep.Max.ReadingsPerSecond = 5000
	rep.Recovery.RestoreSeconds = 1.5
	if err := plan.Save(dir, rep); err != nil {
		t.Fatal(err)
	}
	h := d.headroom()
	if h == nil || h.MaxReadingsPerSecond != 5000 || h.Ratio != -1 || h.IngestRideOutSeconds != -1 || h.DiskFullInSeconds != -1 {
		t.Fatalf("headroom: %+v", h)
	}
	if c := d.running(); c.Checkpointing.Mode != "at_least_once" {
		// Every sink has a spool; without input none fills.
		if len(h.SpoolRideOutSeconds) != len(c.Sinks) {
			t.Errorf("spool ride-outs %v, want one per sink of %d", h.SpoolRideOutSeconds, len(c.Sinks))
		}
		for name, v := range h.SpoolRideOutSeconds {
			if v != -1 {
				t.Errorf("spool of %s rides out %v without input, want -1", name, v)
			}
		}
	}
	if lastRestore.Load() == 0 && startToReady.Load() == 0 && (h.RestoreFrom != "plan" || h.CatchUpSeconds != 1.5) {
		t.Errorf("catch-up without input: %+v", h)
	}
	rec = httptest.NewRecorder()
	d.handlePlan(rec, httptest.NewRequest(http.MethodGet, "/api/v1/plan", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"predicted_catchup_seconds"`) {
		t.Errorf("GET /api/v1/plan: %d %s", rec.Code, rec.Body)
	}
	mfs, err := d.registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			seen[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	for _, name := range []string{"eddy_headroom_ratio", "eddy_predicted_catchup_seconds",
		"eddy_ingest_outage_ride_out_seconds", "eddy_disk_full_in_seconds", "eddy_sink_spool_outage_ride_out_seconds"} {
		if _, ok := seen[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestStatusHeadroom(t *testing.T) {
	s := statusSnapshot{Running: true, Rate: 950, Headroom: 4.24}
	if got := composeStatus(s); !strings.Contains(got, "headroom 4.2×") {
		t.Errorf("STATUS %q lacks the headroom", got)
	}
	if s.stable() != (statusSnapshot{Running: true}).stable() {
		t.Error("the headroom is part of the stable STATUS")
	}
}
