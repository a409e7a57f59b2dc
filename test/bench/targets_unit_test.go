package bench

import (
	"strings"
	"testing"
)

func TestPrintTargets(t *testing.T) {
	ts := []target{
		{"(x) rate", "BenchmarkX", "readings/s", "10k", "≥ 1M", atLeast(1e6), []string{"cpu_ns/reading"}},
		{"(y) latency", "BenchmarkY", "p99_ms", "776", "≤ 50", atMost(50), nil},
		{"(z) other", "BenchmarkZ", "ratio", "—", "≥ 0.9", atLeast(0.9), nil},
	}
	got := map[string]float64{
		"BenchmarkX readings/s": 2_391_106, "BenchmarkX cpu_ns/reading": 517, "BenchmarkX loadavg_1m": 0.92,
		"BenchmarkY p99_ms": 51,
	}
	look := func(bench, unit string) (float64, bool) { v, ok := got[bench+" "+unit]; return v, ok }
	var sb strings.Builder
	printTargets(&sb, ts, look)
	out := sb.String()
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		for _, r := range []string{"(x)", "(y)", "(z)"} {
			if strings.HasPrefix(l, r) {
				lines[r] = strings.Join(strings.Fields(l), " ")
			}
		}
	}
	for r, want := range map[string]string{
		"(x)": "(x) rate 10k 2,391,106 ≥ 1M met cpu_ns/reading 517, load 0.92",
		"(y)": "(y) latency 776 51 ≤ 50 missed",
		"(z)": "(z) other — not run ≥ 0.9 BenchmarkZ",
	} {
		if lines[r] != want {
			t.Errorf("row %s = %q, want %q\n%s", r, lines[r], want, out)
		}
	}

	sb.Reset()
	printTargets(&sb, ts, func(string, string) (float64, bool) { return 0, false })
	if sb.Len() != 0 {
		t.Errorf("no benchmark ran, but printed:\n%s", sb.String())
	}
}

func TestFmtFigure(t *testing.T) {
	for v, want := range map[float64]string{0.694: "0.694", 25.75: "25.8", 999: "999", 1000: "1,000", 42694.4: "42,694", -1234567: "-1,234,567"} {
		if got := fmtFigure(v); got != want {
			t.Errorf("fmtFigure(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestIssue13Targets checks the table against the issue's bounds: a
// figure at the bound meets it, one just past it does not.
func TestIssue13Targets(t *testing.T) {
	for _, tc := range []struct {
		row       string
		ok, notOK float64
	}{
		{"(b) end to end, 1 reading/msg, ÷ ceiling", 0.9, 0.899},
		{"(f) sync phase p99 at ≥ 1 GiB (ms)", 50, 50.01},
		{"(i) replay after recovery, cold, ≥ 1 GiB", 300e3, 299e3},
		{"peak RSS (MiB), (i) at ≥ 1 GiB", 384, 384.1},
		{"(c) eddy CPU per reading, 50/msg", 500, 501},
	} {
		found := false
		for _, tg := range issue13 {
			if tg.row != tc.row {
				continue
			}
			found = true
			if !tg.met(tc.ok) || tg.met(tc.notOK) {
				t.Errorf("%s: met(%v)=%v met(%v)=%v", tc.row, tc.ok, tg.met(tc.ok), tc.notOK, tg.met(tc.notOK))
			}
		}
		if !found {
			t.Errorf("no row %q", tc.row)
		}
	}
}
