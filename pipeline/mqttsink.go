package pipeline

import (
	"context"
	"fmt"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
)

// MQTTSink publishes each output to its rendered topic.
type MQTTSink struct {
	pub    *mqttio.Publisher
	qos    byte
	retain bool
}

// NewMQTTSink publishes through pub, which the caller owns and closes.
func NewMQTTSink(pub *mqttio.Publisher, qos byte, retain bool) *MQTTSink {
	return &MQTTSink{pub: pub, qos: qos, retain: retain}
}

// Write publishes outs in order; it blocks while the publisher's window of
// unacknowledged messages is full.
func (s *MQTTSink) Write(ctx context.Context, outs []Output) error {
	for _, o := range outs {
		if err := s.pub.Publish(ctx, o.Topic, o.Payload, s.qos, s.retain); err != nil {
			return fmt.Errorf("pipeline: publish to %s: %w", o.Topic, err)
		}
	}
	return nil
}

// Flush waits until the broker has acknowledged everything published.
func (s *MQTTSink) Flush(ctx context.Context) error { return s.pub.Flush(ctx) }

// Close does nothing: the publisher is shared and closed by its owner.
func (s *MQTTSink) Close() error { return nil }
