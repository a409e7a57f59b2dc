package sink

import (
	"context"
	"fmt"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
)

// MQTT publishes each output to its rendered topic.
type MQTT struct {
	pub    *mqttio.Publisher
	qos    byte
	retain bool
}

// NewMQTT publishes through pub, which the caller owns and closes.
func NewMQTT(pub *mqttio.Publisher, qos byte, retain bool) *MQTT {
	return &MQTT{pub: pub, qos: qos, retain: retain}
}

// Write publishes outs in order; it blocks while the publisher's window of
// unacknowledged messages is full.
func (s *MQTT) Write(ctx context.Context, outs []Output) error {
	for _, o := range outs {
		if err := s.pub.Publish(ctx, o.Topic, o.Payload, s.qos, s.retain); err != nil {
			return fmt.Errorf("sink: publish to %s: %w", o.Topic, err)
		}
	}
	return nil
}

// Flush waits until the broker has acknowledged everything published.
func (s *MQTT) Flush(ctx context.Context) error { return s.pub.Flush(ctx) }

// Connected reports whether the publisher's connection is up.
func (s *MQTT) Connected() bool { return s.pub.Connected() }

// Close does nothing: the publisher is shared and closed by its owner.
func (s *MQTT) Close() error { return nil }
