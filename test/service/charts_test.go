package service

import (
	"image"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/daemon"
	page "github.com/eddy-stream/eddy/test/chromium"
)

// chartColor is a series colour of daemon/web/static/ui/app.js (COLOR).
type chartColor struct {
	name string
	rgb  [3]uint8
}

var (
	colIn    = chartColor{"in", [3]uint8{0x0f, 0x76, 0x6e}}
	colOut   = chartColor{"out", [3]uint8{0x7c, 0x3a, 0xed}}
	colBP    = chartColor{"back-pressure", [3]uint8{0xd9, 0x77, 0x06}}
	colLag   = chartColor{"watermark lag", [3]uint8{0x25, 0x63, 0xeb}}
	colE2E   = chartColor{"end to end", [3]uint8{0x0f, 0x76, 0x6e}}
	colStart = chartColor{"start delay", [3]uint8{0x25, 0x63, 0xeb}}
	colAlign = chartColor{"alignment", [3]uint8{0xd9, 0x77, 0x06}}
	colSync  = chartColor{"sync", [3]uint8{0x7c, 0x3a, 0xed}}
	colAsync = chartColor{"async", [3]uint8{0xdb, 0x27, 0x77}}
	colCkpt  = chartColor{"checkpointed size", [3]uint8{0x0f, 0x76, 0x6e}}
	colFull  = chartColor{"full size", [3]uint8{0x64, 0x74, 0x8b}}
)

// chartWant is what one chart of a view must show: every colour of all
// (each series is drawn), and at least one colour of any (series that may
// lie on top of each other, such as phases that all took 0 ms).
type chartWant struct {
	id       string
	all, any []chartColor
}

// minSeriesPixels is how many pixels of a series' colour its chart's
// plotting area must hold: a drawn line or a few bars, not a legend swatch
// (the legend lies outside the plotting area anyway).
const minSeriesPixels = 40

// TestWebCharts runs eddy with live input until the one-hour history and
// the checkpoint statistics have points, loads the overview and the
// checkpoints view in headless Chromium and checks the screenshots' pixels:
// each chart's plotting area holds its series' colours. The page notes in
// the DOM where each plotting area is (data-box) and how many points it
// drew (data-points); Chromium dumps that DOM and takes the screenshot in
// the same load, and the test polls the page for those, never sleeps.
// Screenshots are kept in a temporary directory (logged) and the overview's
// is copied to /tmp/eddy-charts.png.
func TestWebCharts(t *testing.T) {
	e := newEddy(t, testConfig{Interval: "1s"})
	p := e.start()
	e.simulateInBackground(400)

	const points = 4
	p.WaitFor("4 history points with input and 3 checkpoints", 90*time.Second, func() bool {
		var h daemon.History
		p.Get("/api/v1/history", &h)
		n := len(h.RecordsIn)
		return n >= points && h.RecordsIn[n-1] != nil && *h.RecordsIn[n-1] > 0 &&
			h.RecordsOut[n-1] != nil && *h.RecordsOut[n-1] > 0 && len(h.Checkpoints.ID) >= 3
	})

	shots, err := os.MkdirTemp("", "eddy-charts-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)
	views := []struct {
		frag   string
		charts []chartWant
	}{
		{"overview", []chartWant{
			{id: "chart-throughput", all: []chartColor{colIn, colOut}},
			{id: "chart-backpressure", all: []chartColor{colBP}},
			{id: "chart-wmlag", all: []chartColor{colLag}},
		}},
		{"checkpoints", []chartWant{
			{id: "chart-cp-duration", all: []chartColor{colE2E}},
			{id: "chart-cp-phases", any: []chartColor{colStart, colAlign, colSync, colAsync}},
			{id: "chart-cp-size", all: []chartColor{colCkpt, colFull}},
		}},
	}
	for _, v := range views {
		url := e.URL() + "/#" + v.frag
		path := filepath.Join(shots, "charts-"+v.frag+".png")
		// One page load gives both the screenshot and the DOM, in which the
		// page notes where each plotting area is; poll until every chart
		// has drawn points (the page's own flag).
		var boxes map[string]image.Rectangle
		p.WaitFor(v.frag+" charts drawn with data", 60*time.Second, func() bool {
			dom := chromium(t, url, "--force-device-scale-factor=1", "--dump-dom", "--screenshot="+path)
			boxes = page.ChartBoxes(dom)
			for _, c := range v.charts {
				b, ok := boxes[c.id]
				if !ok || b.Dx() < 100 || b.Dy() < 50 || page.ChartPoints(dom, c.id) < 2 {
					return false
				}
			}
			return true
		})
		t.Logf("screenshot: %s", path)
		img := page.DecodePNG(t, path)
		for _, c := range v.charts {
			box := boxes[c.id]
			for _, col := range c.all {
				n := page.CountColor(img, box, col.rgb)
				t.Logf("%s: %s: %d pixels of %s", v.frag, c.id, n, col.name)
				if n < minSeriesPixels {
					t.Errorf("%s: %s has %d pixels of the %s series colour in its plotting area %v, want ≥ %d",
						v.frag, c.id, n, col.name, box, minSeriesPixels)
				}
			}
			if len(c.any) > 0 {
				total, seen := 0, []string{}
				for _, col := range c.any {
					n := page.CountColor(img, box, col.rgb)
					total += n
					seen = append(seen, col.name+"="+strconv.Itoa(n))
				}
				t.Logf("%s: %s: pixels %s", v.frag, c.id, strings.Join(seen, " "))
				if total < minSeriesPixels {
					t.Errorf("%s: %s has too few series pixels in its plotting area %v: %s", v.frag, c.id, box, strings.Join(seen, " "))
				}
			}
		}
		if v.frag == "overview" {
			if b, err := os.ReadFile(path); err == nil {
				_ = os.WriteFile("/tmp/eddy-charts.png", b, 0o644)
			}
		}
	}
}
