package sink

import (
	"context"
)

// Sink receives rendered output. Implementations are shared by every task
// of a job and must be safe for concurrent use.
//
// When Write fails, or Flush fails after a Write, the caller hands the same
// batch over again (after a backoff) until both succeed; a sink may use
// that to avoid writing the part that had already got through twice.
type Sink interface {
	// Write hands over outputs in order. It may buffer; it blocks when the
	// sink cannot keep up (back-pressure), and never drops.
	Write(ctx context.Context, outs []Output) error
	// Flush returns nil only once everything written so far is durable or
	// acknowledged by the broker.
	Flush(ctx context.Context) error
	Close() error
}

// Output is one rendered message: a window result, a reading (from a sink reading a stateless stage) or a dead letter.
type Output struct {
	Topic   string `json:"topic,omitempty"` // rendered topic template; "" for sinks without topics
	ID      string `json:"id,omitempty"`    // stable result id; "" for readings and dead letters
	Payload []byte `json:"payload"`
}

// Connector is implemented by a sink with a connection (MQTT): Connected
// reports whether it is up now, for the sink's state while Write blocks.
type Connector interface {
	Connected() bool
}
