package web

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/test/chromium"
)

// overviewJSON is a GET /api/v1/overview whose broker reports dropped
// messages.
func overviewJSON(dropped int) string {
	return `{"appliance_id":"a1","version":"1.0.0","uptime_seconds":5,"running":true,"ready":true,"status":"ok",` +
		`"tasks":[],"ingest":[],"broker":{"kind":"external","version":"mosquitto version 2.0.11",` +
		`"drops_reported":true,"messages_dropped":` + strconv.Itoa(dropped) + `,"messages_dropped_seen":0}}`
}

// pageDOM serves the page with overview as the API's answer and returns
// the DOM headless Chromium renders.
func pageDOM(t *testing.T, overview string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/overview", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(overview))
	})
	mux.HandleFunc("GET /api/v1/checkpoints", http.NotFound)
	mux.Handle("GET /", Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	return chromium.Run(t, srv.URL+"/", "--dump-dom")
}

// The page warns while the broker reports dropped messages, and not
// otherwise.
func TestBrokerDropsWarning(t *testing.T) {
	banner := regexp.MustCompile(`<div id="broker-drops"[^>]*>([^<]*)</div>`)
	dom := pageDOM(t, overviewJSON(4000))
	m := banner.FindStringSubmatch(dom)
	if m == nil || strings.Contains(m[0], "hidden") {
		t.Fatalf("no visible broker-drops warning:\n%s", dom)
	}
	for _, want := range []string{"mosquitto version 2.0.11", "has dropped 4,000 messages", "max_queued_messages"} {
		if !strings.Contains(m[1], want) {
			t.Errorf("warning %q lacks %q", m[1], want)
		}
	}
	dom = pageDOM(t, overviewJSON(0))
	if m := banner.FindStringSubmatch(dom); m == nil || !strings.Contains(m[0], "hidden") {
		t.Errorf("warning shown with no drops: %v", m)
	}
}
