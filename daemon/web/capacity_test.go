package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/chromium"
)

// Series colours of app.js (COLOR) the headroom and capacity charts use.
var (
	colHeadroom = [3]uint8{0x16, 0xa3, 0x4a}
	colReplay   = [3]uint8{0x08, 0x91, 0xb2}
	colLive     = [3]uint8{0x0f, 0x76, 0x6e}
)

// capacityAPI serves the page with an API that has a plan: an overview,
// a history of 20 points whose headroom climbs from 2× to 6×, and
// GET /api/v1/plan.
func capacityAPI(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	reply := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
		}
	}
	now := time.Now().UnixMilli()
	var ts []int64
	var in, hr []float64
	for i := range 20 {
		ts = append(ts, now-int64(19-i)*5000)
		in = append(in, 1000)
		hr = append(hr, 2+float64(i)/5)
	}
	hist, _ := json.Marshal(map[string]any{"step_ms": 5000, "span_ms": 3600000, "time": ts,
		"records_in_per_second": in, "records_out_per_second": in, "back_pressure": make([]float64, 20),
		"watermark_lag_ms": in, "headroom": hr, "checkpoints": map[string]any{}})
	mux.HandleFunc("GET /api/v1/overview", reply(`{"appliance_id":"a1","version":"1.0.0","uptime_seconds":5,"running":true,`+
		`"ready":true,"status":"ok","tasks":[],"ingest":[],"headroom":{"ratio":5.8}}`))
	mux.HandleFunc("GET /api/v1/checkpoints", http.NotFound)
	mux.HandleFunc("GET /api/v1/history", reply(string(hist)))
	mux.HandleFunc("GET /api/v1/plan", reply(fmt.Sprintf(`{"plan":{"version":1,"time":"%s","input":"simulator","cores":2,
		"max":{"readings_per_second":400000,"messages_per_second":8000,"bottleneck":"source-readings","upstream_back_pressure":0},
		"recovery":{"checkpoint":3,"checkpoint_bytes":5000000,"restore_seconds":0.2,"remote":"not measured","replay_readings_per_second":300000},
		"skew":{"busiest_subtask":"per_device-1","subtask_share":0.52,"subtasks":2,"busiest_key_group":7,"key_group_share":0.012,
		"max_parallelism":128,"scale_target":8,"room_to_scale":true},
		"windows":{"firings":4,"results_per_firing":500,"burst_seconds":0.05,"peak_output_per_second":10000},
		"advice":[{"figure":"headroom","ok":true},{"figure":"ingest log ride-out","ok":false,"change":"raise ingest_log.max_size"}]},
		"live":{"ratio":4,"live_readings_per_second":100000,"restore_seconds":0.3,"restore_from":"this start",
		"predicted_catchup_seconds":2.5,"ingest_outage_ride_out_seconds":600,"disk_full_in_seconds":-1}}`,
		time.Now().UTC().Format(time.RFC3339))))
	mux.Handle("GET /", Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestCapacityCharts loads the overview and the Capacity view in headless
// Chromium against a stub API with a plan, and checks the screenshots'
// pixels: the headroom chart's plotting area holds its series' colour, the
// capacity chart its three bars' colours; the view shows the figures and
// the advice. Screenshots are kept in a temporary directory (logged).
func TestCapacityCharts(t *testing.T) {
	srv := capacityAPI(t)
	shots, err := os.MkdirTemp("", "eddy-capacity-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)
	for _, v := range []struct {
		frag, chart string
		colors      map[string][3]uint8
		texts       []string
	}{
		{"overview", "chart-headroom", map[string][3]uint8{"headroom": colHeadroom}, nil},
		{"capacity", "chart-capacity", map[string][3]uint8{"maximum": colHeadroom, "after restore": colReplay, "live": colLive},
			[]string{"400k readings/s", "per_device-1", "raise ingest_log.max_size", "never"}},
	} {
		path := filepath.Join(shots, v.frag+".png")
		dom := chromium.Run(t, srv.URL+"/#"+v.frag, "--force-device-scale-factor=1", "--dump-dom", "--screenshot="+path)
		box, ok := chromium.ChartBoxes(dom)[v.chart]
		if !ok || box.Dx() < 100 || box.Dy() < 50 || chromium.ChartPoints(dom, v.chart) < 2 {
			t.Fatalf("%s: %s not drawn (box %v, %d points):\n%s", v.frag, v.chart, box, chromium.ChartPoints(dom, v.chart), dom)
		}
		img := chromium.DecodePNG(t, path)
		for name, rgb := range v.colors {
			n := chromium.CountColor(img, box, rgb)
			t.Logf("%s: %s: %d pixels of %s", v.frag, v.chart, n, name)
			if n < 40 {
				t.Errorf("%s: %s has %d pixels of the %s colour in %v, want ≥ 40", v.frag, v.chart, n, name, box)
			}
		}
		for _, s := range v.texts {
			if !strings.Contains(dom, s) {
				t.Errorf("%s: the page lacks %q", v.frag, s)
			}
		}
	}
}
