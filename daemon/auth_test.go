package daemon

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/daemon/config"
)

func TestAccessPolicy(t *testing.T) {
	cases := []struct {
		name   string
		listen string
		token  string
		method string
		path   string
		want   bool // needs the token
	}{
		{"no token, loopback, trigger", "127.0.0.1:8086", "", "POST", "/api/v1/checkpoints", false},
		{"no token, remote allowed insecure", "0.0.0.0:8086", "", "GET", "/api/v1/overview", false},
		{"token, loopback, read", "127.0.0.1:8086", "s3cret", "GET", "/api/v1/overview", false},
		{"token, loopback, metrics", "localhost:8086", "s3cret", "GET", "/metrics", false},
		{"token, loopback, trigger", "127.0.0.1:8086", "s3cret", "POST", "/api/v1/checkpoints", true},
		{"token, ipv6 loopback, trigger", "[::1]:8086", "s3cret", "POST", "/api/v1/checkpoints", true},
		{"token, remote, read", "0.0.0.0:8086", "s3cret", "GET", "/api/v1/overview", true},
		{"token, remote, metrics", "192.0.2.10:8086", "s3cret", "GET", "/metrics", true},
		{"token, all interfaces, config", ":8086", "s3cret", "GET", "/api/v1/config", true},
		{"token, remote, healthz", "0.0.0.0:8086", "s3cret", "GET", "/healthz", false},
		{"token, remote, page shell", "0.0.0.0:8086", "s3cret", "GET", "/", false},
		{"token, remote, page asset", "0.0.0.0:8086", "s3cret", "GET", "/ui/app.js", false},
		{"token, remote, trigger", "0.0.0.0:8086", "s3cret", "POST", "/api/v1/checkpoints", true},
		{"token, remote, unknown path", "0.0.0.0:8086", "s3cret", "GET", "/debug/pprof/", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newAccessPolicy(c.listen, c.token)
			if got := p.needsToken(c.method, c.path); got != c.want {
				t.Errorf("needsToken(%s %s) on %s = %v, want %v", c.method, c.path, c.listen, got, c.want)
			}
		})
	}
}

func TestAccessMiddleware(t *testing.T) {
	h := newAccessPolicy("0.0.0.0:8086", "s3cret").wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	for _, c := range []struct {
		name, auth string
		want       int
		body       string
	}{
		{"none", "", http.StatusUnauthorized, "needs the bearer token"},
		{"wrong", "Bearer nope", http.StatusUnauthorized, "wrong bearer token"},
		{"basic", "Basic czNjcmV0", http.StatusUnauthorized, "wrong bearer token"},
		{"right", "Bearer s3cret", http.StatusOK, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v1/overview", nil)
			if c.auth != "" {
				r.Header.Set("Authorization", c.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want || !strings.Contains(w.Body.String(), c.body) {
				t.Fatalf("%d %q, want %d containing %q", w.Code, w.Body.String(), c.want, c.body)
			}
			if c.want == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "token")
	if err := os.WriteFile(f, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := loadToken(config.HTTP{TokenFile: f}); err != nil || tok != "from-file" {
		t.Errorf("token_file: %q, %v", tok, err)
	}
	if tok, err := loadToken(config.HTTP{Token: "inline"}); err != nil || tok != "inline" {
		t.Errorf("token: %q, %v", tok, err)
	}
	if _, err := loadToken(config.HTTP{TokenFile: filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "http.token_file") {
		t.Errorf("missing token_file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := loadToken(config.HTTP{TokenFile: empty}); err == nil {
		t.Errorf("empty token_file accepted")
	}
}
