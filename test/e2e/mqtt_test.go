package e2e

import (
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/mqtttest"
	"github.com/eddy-stream/eddy/test/oracle"
)

// received is one message a subscriber got.
type received struct {
	Topic   string
	Payload string
}

// subscriber records every message on a topic filter.
type subscriber struct {
	mu     sync.Mutex
	msgs   []received
	probed chan struct{}
}

const subscriberProbe = "e2e/probe"

// subscribe subscribes to filter at QoS 1 and returns once the
// subscription is in place (a probe published afterwards came back).
func subscribe(t *testing.T, b *mqtttest.Broker, f *eddytest.Feeder, filter string) *subscriber {
	t.Helper()
	s := &subscriber{probed: make(chan struct{}, 1)}
	src := mqttio.NewSource(mqttio.ClientOptions{
		Broker: b.URL(), ClientID: "e2e-subscriber", CleanSession: true, ReconnectMaxInterval: time.Second,
	}, []mqttio.Subscription{{Filter: filter, QoS: 1}, {Filter: subscriberProbe, QoS: 1}}, func(m mqttio.Message) {
		m.Ack()
		if m.Topic == subscriberProbe {
			select {
			case s.probed <- struct{}{}:
			default:
			}
			return
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, received{Topic: m.Topic, Payload: string(m.Payload)})
		s.mu.Unlock()
	})
	if err := src.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	deadline := time.Now().Add(readyTimeout)
	for {
		if err := f.Send([]simulate.Message{{Topic: subscriberProbe, Payload: []byte("probe")}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.probed:
			return s
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription to %s not in place within %v", filter, readyTimeout)
		}
	}
}

func (s *subscriber) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

// waitResults waits until the subscriber has every window of want (or 60
// s have passed: by the time it is called the results file has them all,
// so only the broker's delivery is still on its way) and returns what it
// received.
func (s *subscriber) waitResults(t *testing.T, appliance, stage string, keyFields []string, want map[string]oracle.Result) *resultSet {
	t.Helper()
	var rs *resultSet
	// By the deadline, rs is what arrived: the caller compares it.
	eddytest.Poll(60*time.Second, eddytest.PollEvery, func() bool {
		var lines []string
		for _, m := range s.messages() {
			lines = append(lines, m.Payload)
		}
		rs = collectResults(lines, appliance, stage, keyFields)
		return rs.missing(want) == 0
	})
	return rs
}
