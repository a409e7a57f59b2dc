// Package web is eddy's web page: plain HTML, CSS and JavaScript embedded
// in the binary (no CDN, works offline). The page reads the JSON API of
// package daemon and polls it every 2 s. Its charts use uPlot, vendored
// under static/vendor/ by scripts/vendor-web.sh and pinned by the sha256
// sums in vendor.txt (TestWebVendoredChecksums).
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Handler serves the page at / and its assets under /ui/. Unknown paths
// are 404; directories are not listed.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy",
			"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		files.ServeHTTP(w, r)
	})
}
