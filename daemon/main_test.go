package daemon

import (
	"testing"

	"go.uber.org/goleak"
)

// The tests that run the eddy binary are in test/service.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
