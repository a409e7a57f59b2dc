package service

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTokenOverHTTP: with a token on a loopback listen address, reads are
// open, triggering a checkpoint needs the token, and `eddy checkpoint
// trigger` sends the one from the configuration.
func TestTokenOverHTTP(t *testing.T) {
	e := newEddy(t, testConfig{Interval: "1h", Token: "s3cret"})
	p := e.start()
	p.WaitLog(0, "pipeline running", 30*time.Second)

	if code := p.Get("/api/v1/overview", nil); code != http.StatusOK {
		t.Errorf("GET /api/v1/overview without a token on loopback: %d, want 200", code)
	}
	post := func(auth string) int {
		req, _ := http.NewRequest("POST", e.URL()+"/api/v1/checkpoints", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := p.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(""); code != http.StatusUnauthorized {
		t.Errorf("POST /api/v1/checkpoints without token: %d, want 401", code)
	}
	if code := post("Bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("POST /api/v1/checkpoints with a wrong token: %d, want 401", code)
	}
	if code := post("Bearer s3cret"); code != http.StatusOK {
		t.Errorf("POST /api/v1/checkpoints with the token: %d, want 200", code)
	}

	cli := func(args ...string) (string, error) {
		return e.Command(append([]string{"checkpoint", "trigger", "-c", e.ConfigPath, "--url", e.URL()}, args...)...)
	}
	if out, err := cli(); err != nil || !strings.Contains(out, "COMPLETED") {
		t.Errorf("eddy checkpoint trigger (token from the configuration): %v\n%s", err, out)
	}
	if out, err := cli("--token", "wrong"); err == nil || !strings.Contains(out, "401") {
		t.Errorf("eddy checkpoint trigger --token wrong: %v\n%s", err, out)
	}
}
