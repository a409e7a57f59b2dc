package mqttio

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// MeasureCeiling measures what the broker at brokerURL carries: one
// Publisher sends n messages of payload at qos to a fresh topic and one
// Source (auto-acking as soon as each message arrives) receives them. It
// returns received messages per second, from the first Publish to the last
// message received, and fails if not all n arrive before ctx ends. It is
// the ceiling eddy's own throughput is compared with.
func MeasureCeiling(ctx context.Context, brokerURL string, n int, payload []byte, qos byte) (float64, error) {
	if n <= 0 {
		return 0, errors.New("mqttio: measure ceiling: n must be positive")
	}
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	topic := "eddy/ceiling/" + id
	var got atomic.Int64
	all := make(chan struct{})
	src := NewSource(ClientOptions{
		Broker: brokerURL, ClientID: "eddy-ceiling-sub-" + id, CleanSession: true,
		ReconnectMaxInterval: time.Second,
	}, []Subscription{{Filter: topic, QoS: qos}}, func(m Message) {
		m.Ack()
		if got.Add(1) == int64(n) {
			close(all)
		}
	})
	if err := src.Start(ctx); err != nil {
		return 0, fmt.Errorf("mqttio: measure ceiling: %w", err)
	}
	defer src.Close()
	if err := waitSubscribed(ctx, src, brokerURL, topic, qos); err != nil {
		return 0, fmt.Errorf("mqttio: measure ceiling: %w", err)
	}
	got.Store(0)

	pub := NewPublisher(ClientOptions{
		Broker: brokerURL, ClientID: "eddy-ceiling-pub-" + id, CleanSession: true,
		ReconnectMaxInterval: time.Second,
	})
	defer pub.Close()
	if err := pub.Start(ctx); err != nil {
		return 0, fmt.Errorf("mqttio: measure ceiling: %w", err)
	}
	if err := pub.conn.waitUp(ctx, pub.stop); err != nil {
		return 0, fmt.Errorf("mqttio: measure ceiling: connect publisher: %w", err)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := pub.Publish(ctx, topic, payload, qos, false); err != nil {
			return 0, fmt.Errorf("mqttio: measure ceiling: publish %d: %w", i, err)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		return 0, fmt.Errorf("mqttio: measure ceiling: %w", err)
	}
	select {
	case <-all:
	case <-ctx.Done():
		return 0, fmt.Errorf("mqttio: measure ceiling: received %d of %d: %w", got.Load(), n, ctx.Err())
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// waitSubscribed publishes probes to topic until src receives one, so the
// subscription is in place before the measurement starts.
func waitSubscribed(ctx context.Context, src *Source, brokerURL, topic string, qos byte) error {
	pub := NewPublisher(ClientOptions{
		Broker: brokerURL, ClientID: "eddy-ceiling-probe-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		CleanSession: true, ReconnectMaxInterval: time.Second,
	})
	defer pub.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	start := src.Stats().Received
	for src.Stats().Received == start {
		if err := pub.Publish(ctx, topic, []byte("probe"), qos, false); err != nil {
			return fmt.Errorf("probe subscription: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("subscription not active: %w", ctx.Err())
		case <-tick.C:
		}
	}
	if err := pub.Flush(ctx); err != nil {
		return err
	}
	// Let probes still in flight arrive before the counter is reset.
	for {
		before := src.Stats().Received
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if src.Stats().Received == before {
			return nil
		}
	}
}
