package simulate_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/mqtttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunThroughBroker publishes a batched stream with bad input through
// mosquitto and checks that a subscriber receives exactly the messages the
// generator produced, in order.
func TestRunThroughBroker(t *testing.T) {
	b := mqtttest.Start(t)
	o := simulate.Options{
		Devices: 20, Sites: 4, Batch: 3, Count: 3000, Disorder: 2 * time.Second,
		Start: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), Interval: 50 * time.Millisecond,
		Seed: 7, EndMarker: true, Bad: 0.05,
	}
	var want []string
	wantGood := 0
	if err := simulate.Generate(o, func(topic string, payload []byte, rs []simulate.Reading) error {
		want = append(want, topic+" "+string(payload))
		wantGood += len(rs)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var got []string
	all := make(chan struct{})
	co := mqttio.ClientOptions{Broker: b.URL(), CleanSession: true, ReconnectMaxInterval: 200 * time.Millisecond}
	so := co
	so.ClientID = "sim-sub"
	probed := make(chan struct{}, 1)
	src := mqttio.NewSource(so, []mqttio.Subscription{{Filter: "sensors/#", QoS: 1}, {Filter: "probe", QoS: 1}}, func(m mqttio.Message) {
		m.Ack()
		if m.Topic == "probe" {
			select {
			case probed <- struct{}{}:
			default:
			}
			return
		}
		mu.Lock()
		got = append(got, m.Topic+" "+string(m.Payload))
		if len(got) == len(want) {
			close(all)
		}
		mu.Unlock()
	})
	if err := src.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	po := co
	po.ClientID = "sim-pub"
	pub := mqttio.NewPublisher(po)
	defer pub.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Probe until the subscription is in place.
	for subscribed := false; !subscribed; {
		if err := pub.Publish(ctx, "probe", nil, 1, false); err != nil {
			t.Fatal(err)
		}
		select {
		case <-probed:
			subscribed = true
		case <-time.After(20 * time.Millisecond):
		}
	}
	st, err := simulate.Run(ctx, o, pub.Publish)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatalf("received %d of %d messages", len(got), len(want))
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d differs:\n got %.200s\nwant %.200s", i, got[i], want[i])
		}
	}
	if st.Messages != int64(len(want)) || st.GoodReadings+1 != int64(wantGood) {
		t.Fatalf("stats %+v; generator: %d messages, %d good readings (end marker included)", st, len(want), wantGood)
	}
	t.Logf("simulated through mosquitto: %+v", st)
}
