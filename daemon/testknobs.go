package daemon

import (
	"os"
	"time"

	"github.com/eddy-stream/eddy/pipeline/sink"
)

// testBatchCost is EDDY_TEST_BATCH_COST, a duration every keyed subtask
// waits per batch (pipeline.JobSpec.BatchCost): end-to-end tests make a
// stage slower than its input with it, to run under sustained
// back-pressure. Not a setting: unset, or not a duration, it is 0.
func testBatchCost() time.Duration {
	d, err := time.ParseDuration(os.Getenv("EDDY_TEST_BATCH_COST"))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// testSinkCost is EDDY_TEST_SINK_COST, a duration every file sink waits per
// output it is handed: end-to-end tests and benchmarks make a sink slower
// than its input with it. Not a setting: unset, or not a duration, it is 0.
func testSinkCost() time.Duration {
	d, err := time.ParseDuration(os.Getenv("EDDY_TEST_SINK_COST"))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// withTestSinkCost wraps s to wait testSinkCost per output in Write.
func withTestSinkCost(s sink.Sink) sink.Sink {
	if c := testSinkCost(); c > 0 {
		return sink.Slow(s, c)
	}
	return s
}
