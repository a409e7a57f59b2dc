package e2e

import (
	"testing"

	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/mqtttest"
)

// The subscriber is the harness's.
type subscriber = eddytest.Subscriber

// subscribe subscribes to filter on b at QoS 1 and returns once the
// subscription is in place.
func subscribe(t *testing.T, b *mqtttest.Broker, f *eddytest.Feeder, filter string) *subscriber {
	t.Helper()
	return eddytest.Subscribe(t, b.URL(), f, filter)
}
