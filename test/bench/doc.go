// Package bench holds eddy's benchmark suite: figures reported with
// b.ReportMetric, each benchmark run once (go test -run '^$' -bench .
// -benchtime 1x ./test/bench/, or make bench). See README.md for what each
// benchmark measures and the targets it is read against. The benchmarks
// report; they do not assert targets.
package bench
