package daemon

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/eddy-stream/eddy/daemon/config"
)

// Access to the HTTP API (README.md "Operating it"):
//
//   - It listens on loopback by default. A listen address reachable from
//     other hosts needs http.token or http.token_file, unless
//     http.allow_insecure_remote is set (config validation enforces this).
//   - With a token set, requests that change something (POST
//     /api/v1/checkpoints) always need "Authorization: Bearer <token>".
//   - With a token set and a non-loopback listen address, every request
//     needs it except GET /healthz (for load balancers and probes) and the
//     static shell of the web page (/ and /ui/…), which is the same in every
//     eddy and holds no data: the page asks for the token and sends it with
//     every API call.

// loadToken returns http.token, or the trimmed content of http.token_file.
func loadToken(h config.HTTP) (string, error) {
	if h.TokenFile == "" {
		return h.Token, nil
	}
	b, err := os.ReadFile(h.TokenFile)
	if err != nil {
		return "", fmt.Errorf("http.token_file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("http.token_file: %s is empty", h.TokenFile)
	}
	return t, nil
}

// accessPolicy decides which requests need the bearer token.
type accessPolicy struct {
	token  string
	remote bool // the listen address is not loopback
}

func newAccessPolicy(listen, token string) accessPolicy {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	return accessPolicy{token: token, remote: !isLoopbackHost(host)}
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// needsToken reports whether a request needs the bearer token.
func (p accessPolicy) needsToken(method, path string) bool {
	if p.token == "" {
		return false
	}
	if method != http.MethodGet && method != http.MethodHead {
		return true
	}
	if !p.remote {
		return false
	}
	return !isPublicPath(path)
}

// isPublicPath: the health check and the static web shell.
func isPublicPath(path string) bool {
	return path == "/healthz" || path == "/" || path == "/index.html" || strings.HasPrefix(path, "/ui/")
}

// authorized reports whether r carries the token.
func (p accessPolicy) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(p.token)) == 1
}

// wrap enforces the policy in front of h.
func (p accessPolicy) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.needsToken(r.Method, r.URL.Path) && !p.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="eddy"`)
			msg := "this endpoint needs the bearer token of http.token or http.token_file (Authorization: Bearer <token>)"
			if r.Header.Get("Authorization") != "" {
				msg = "wrong bearer token"
			}
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": msg})
			return
		}
		h.ServeHTTP(w, r)
	})
}
