package web

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestWebVendoredChecksums checks that the chart library the binary embeds
// (and serves) is byte for byte the one scripts/vendor-web.sh recorded in
// vendor.txt, with its version.
func TestWebVendoredChecksums(t *testing.T) {
	record, err := os.ReadFile("vendor.txt")
	if err != nil {
		t.Fatal(err)
	}
	var pkg string
	sums := map[string]string{}
	for _, line := range strings.Split(string(record), "\n") {
		if v, ok := strings.CutPrefix(line, "package "); ok {
			pkg = v
		} else if sum, name, ok := strings.Cut(line, "  "); ok && len(sum) == 64 {
			sums[name] = sum
		}
	}
	if pkg != "uplot@1.6.32" {
		t.Errorf("vendor.txt names %q, want uplot@1.6.32", pkg)
	}
	for _, name := range []string{"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"} {
		if sums[name] == "" {
			t.Errorf("vendor.txt records no sha256 for %s", name)
		}
	}
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for name, want := range sums {
		b, err := static.ReadFile("static/vendor/" + name)
		if err != nil {
			t.Errorf("embedded vendor/%s: %v", name, err)
			continue
		}
		if got := sha256hex(b); got != want {
			t.Errorf("embedded vendor/%s has sha256 %s, vendor.txt records %s: run scripts/vendor-web.sh", name, got, want)
		}
		resp, err := http.Get(srv.URL + "/vendor/" + name)
		if err != nil {
			t.Fatal(err)
		}
		served, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || sha256hex(served) != want {
			t.Errorf("GET /vendor/%s: %s, sha256 %s", name, resp.Status, sha256hex(served))
		}
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
