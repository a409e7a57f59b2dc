package daemon

import (
	"os"
	"time"
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
