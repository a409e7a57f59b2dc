package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
)

// figures holds the last value each benchmark reported through metric,
// by benchmark name (b.Name()) and unit, for the summary TestMain prints.
var figures = struct {
	sync.Mutex
	m map[string]float64
}{m: map[string]float64{}}

// metric reports v as b.ReportMetric does and keeps it for the summary.
func metric(b *testing.B, v float64, unit string) {
	b.ReportMetric(v, unit)
	figures.Lock()
	figures.m[b.Name()+"\x00"+unit] = v
	figures.Unlock()
}

func figure(bench, unit string) (float64, bool) {
	figures.Lock()
	defer figures.Unlock()
	v, ok := figures.m[bench+"\x00"+unit]
	return v, ok
}

// target is one row of issue 13's table of performance targets: the
// figure a benchmark reports, what it was when the issue was filed, and
// the bound it is read against.
type target struct {
	row   string // the issue's row
	bench string // b.Name() of the benchmark reporting it
	unit  string
	filed string // the issue's "today" figure ("—": not measured then)
	goal  string
	met   func(v float64) bool
	with  []string // units of the same benchmark shown beside the figure
}

func atLeast(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
func atMost(x float64) func(float64) bool  { return func(v float64) bool { return v <= x } }

// rssBound is issue 13's memory target: the 256 MiB managed budget of
// the ≥ 1 GiB benchmarks plus 128 MiB.
const rssBound = 256 + 128

var issue13 = []target{
	{"(b) end to end, 1 reading/msg, ÷ ceiling", "BenchmarkEddyEndToEnd1", "ratio", "0.67", "≥ 0.9", atLeast(0.9), []string{"readings/s"}},
	{"(c) end to end, 50 readings/msg, ÷ ceiling", "BenchmarkEddyEndToEnd50", "ratio", "0.34 (312k readings/s)", "≥ 0.9", atLeast(0.9), []string{"readings/s"}},
	{"(c) eddy CPU per reading, 50/msg", "BenchmarkEddyEndToEnd50", "eddy_cpu_ns/reading", "—", "≤ 500 ns", atMost(500), nil},
	{"(d) pipeline replay, 1 source subtask", "BenchmarkPipelineReplay/readings_per_msg=50", "readings/s", "353k", "≥ 1M", atLeast(1e6), []string{"cpu_ns/reading"}},
	{"(d) same, source parallelism 2", "BenchmarkPipelineReplay/readings_per_msg=50,source_parallelism=2", "readings/s", "610k", "≥ 2M", atLeast(2e6), []string{"cpu_ns/reading"}},
	{"(e) 1 s exactly-once checkpoints ÷ none", "BenchmarkCheckpointOverhead", "ratio", "0.97", "≥ 0.95", atLeast(0.95), []string{"best_ratio", "pair_ratio_min", "pair_ratio_max", "off_cpu_ns/reading", "on_cpu_ns/reading"}},
	{"(f) sync phase p99 at ≥ 1 GiB (ms)", "BenchmarkCheckpointSync", "p99_ms", "776", "≤ 50", atMost(50), []string{"state_MiB"}},
	{"(i) replay after recovery, cold, ≥ 1 GiB", "BenchmarkRecovery/keys=10000000", "replay_readings/s", "24–28k", "≥ 300k", atLeast(300e3), []string{"state_MiB", "replay_cpu_us/reading"}},
	{"peak RSS (MiB), (f) at ≥ 1 GiB", "BenchmarkCheckpointSync", "peak_rss_MiB", "—", "≤ 384", atMost(rssBound), []string{"state_MiB"}},
	{"peak RSS (MiB), (i) at ≥ 1 GiB", "BenchmarkRecovery/keys=10000000", "peak_rss_MiB", "—", "≤ 384", atMost(rssBound), []string{"state_MiB"}},
}

// printTargets writes the table of targets with this run's figures, or
// nothing if none of their benchmarks ran. look returns a figure reported
// in this run.
func printTargets(w io.Writer, ts []target, look func(bench, unit string) (float64, bool)) {
	any := false
	for _, t := range ts {
		if _, ok := look(t.bench, t.unit); ok {
			any = true
		}
	}
	if !any {
		return
	}
	fmt.Fprintln(w, "\nissue 13 targets: the figure when the issue was filed, this run's, the target (load = loadavg_1m at the end of the benchmark)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "row\tfiled\tthis run\ttarget\tmet?\tbeside it")
	for _, t := range ts {
		v, ok := look(t.bench, t.unit)
		if !ok {
			fmt.Fprintf(tw, "%s\t%s\tnot run\t%s\t\t%s\n", t.row, t.filed, t.goal, t.bench)
			continue
		}
		verdict := "missed"
		if t.met(v) {
			verdict = "met"
		}
		var side []string
		for _, u := range t.with {
			if x, ok := look(t.bench, u); ok {
				side = append(side, u+" "+fmtFigure(x))
			}
		}
		if x, ok := look(t.bench, "loadavg_1m"); ok {
			side = append(side, "load "+strconv.FormatFloat(x, 'f', 2, 64))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.row, t.filed, fmtFigure(v), t.goal, verdict, strings.Join(side, ", "))
	}
	tw.Flush()
}

// fmtFigure prints v with thousands separators from 1000 on and three
// significant digits below.
func fmtFigure(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	if math.Abs(v) < 1000 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
