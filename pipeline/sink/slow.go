package sink

import (
	"context"
	"time"
)

// Slow wraps s so that Write waits per output before handing the outputs
// on: a sink slower than its input, for back-pressure tests and benchmarks
// (EDDY_TEST_SINK_COST). It is no setting of eddy.
func Slow(s Sink, per time.Duration) Sink { return &slow{Sink: s, per: per} }

type slow struct {
	Sink
	per time.Duration
}

func (s *slow) Write(ctx context.Context, outs []Output) error {
	t := time.NewTimer(s.per * time.Duration(len(outs)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Sink.Write(ctx, outs)
}
