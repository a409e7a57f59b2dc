package eddytest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/simulate"
)

// Feeder publishes simulator messages to a broker at QoS 1.
type Feeder struct {
	pub *mqttio.Publisher
}

// NewFeeder connects a publisher with a clean session to brokerURL; it is
// closed when the test ends.
func NewFeeder(tb testing.TB, brokerURL, clientID string) *Feeder {
	tb.Helper()
	p := mqttio.NewPublisher(mqttio.ClientOptions{
		Broker: brokerURL, ClientID: clientID, CleanSession: true, ReconnectMaxInterval: time.Second,
	})
	if err := p.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return &Feeder{pub: p}
}

// Publisher is the feeder's MQTT publisher, for a test that publishes on
// its own (a benchmark timing its publishes).
func (f *Feeder) Publisher() *mqttio.Publisher { return f.pub }

// Send publishes msgs in order and waits for every PUBACK (LongTimeout at
// most).
func (f *Feeder) Send(msgs []simulate.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), LongTimeout)
	defer cancel()
	for _, m := range msgs {
		if err := f.pub.Publish(ctx, m.Topic, m.Payload, 1, false); err != nil {
			return err
		}
	}
	return f.pub.Flush(ctx)
}

// MustSend is Send that fails the test on an error.
func (f *Feeder) MustSend(tb testing.TB, msgs []simulate.Message) {
	tb.Helper()
	if err := f.Send(msgs); err != nil {
		tb.Fatalf("publish: %v", err)
	}
}

// ProbeTS is the event time of probe readings: before any stream.
var ProbeTS = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// ProbeMessage is a reading of device _probe on site-1 under the topic
// prefix: temperature 999, which the usual "valid" filter drops, and a
// device name that result checks leave out.
func ProbeMessage(prefix string) simulate.Message {
	payload := fmt.Sprintf(`{"device":"_probe","site":"site-1","ts":%d,"temperature":999,"humidity":0}`, ProbeTS)
	return simulate.Message{Topic: prefix + "/site-1/_probe/telemetry", Payload: []byte(payload)}
}

// Probe makes sure eddy's persistent session subscribes to every source's
// topic before the test publishes: it publishes ProbeMessage until each
// source has received one. prefixes are the first topic levels of the
// sources, in order (default "sensors"). It returns what the first source
// has received.
func (p *Process) Probe(f *Feeder, prefixes ...string) int64 {
	p.in.TB.Helper()
	if len(prefixes) == 0 {
		prefixes = []string{"sensors"}
	}
	var first int64
	got := func() bool {
		o := p.Overview()
		n := 0
		for i, in := range o.Ingest {
			if i < len(prefixes) && in.Received > 0 {
				n++
			}
			if i == 0 {
				first = in.Received
			}
		}
		if n == len(prefixes) {
			return true
		}
		for i, pre := range prefixes {
			if i < len(o.Ingest) && o.Ingest[i].Received > 0 {
				continue
			}
			f.MustSend(p.in.TB, []simulate.Message{ProbeMessage(pre)})
		}
		return false
	}
	if !Poll(ReadyTimeout, 300*time.Millisecond, got) {
		p.in.TB.Fatalf("eddy did not receive a probe on every source within %v: %+v", ReadyTimeout, p.Overview().Ingest)
	}
	return first
}

// Trickle sends msgs in slices of 100 with a short pause between them, so
// that a kill or a power cut lands while eddy reads them; the channel gets
// the first error, or nil once everything was sent and acknowledged.
func (f *Feeder) Trickle(msgs []simulate.Message) <-chan error { return f.TrickleBy(msgs, 100) }

// TrickleBy is Trickle in slices of n.
func (f *Feeder) TrickleBy(msgs []simulate.Message, n int) <-chan error {
	sent := make(chan error, 1)
	go func() {
		for j := 0; j < len(msgs); j += n {
			if err := f.Send(msgs[j:min(j+n, len(msgs))]); err != nil {
				sent <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		sent <- nil
	}()
	return sent
}

// Stream publishes messages at full rate on a goroutine of its own
// (Feeder.Stream): slices of StreamChunk, each sent at QoS 1 and waited
// for (every PUBACK), back to back with no pause.
type Stream struct {
	stop chan struct{}
	done chan struct{}
	sent atomic.Int64
	err  error // set before done is closed
}

// StreamChunk is how many messages a Stream sends between two checks of
// Stop.
const StreamChunk = 200

// Stream starts publishing msgs in order at full rate; Wait or Stop ends
// it. It is stopped when the test ends.
func (f *Feeder) Stream(tb testing.TB, msgs []simulate.Message) *Stream {
	s := &Stream{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for i := 0; i < len(msgs); i += StreamChunk {
			select {
			case <-s.stop:
				return
			default:
			}
			chunk := msgs[i:min(i+StreamChunk, len(msgs))]
			if err := f.Send(chunk); err != nil {
				s.err = err
				return
			}
			s.sent.Add(int64(len(chunk)))
		}
	}()
	tb.Cleanup(func() { s.Stop() })
	return s
}

// Sent is how many messages the broker has acknowledged so far.
func (s *Stream) Sent() int64 { return s.sent.Load() }

// Done is closed when the stream has sent everything, failed or stopped.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Wait waits until everything is sent (LongTimeout at most) and returns
// the first error.
func (s *Stream) Wait() error {
	select {
	case <-s.done:
		return s.err
	case <-time.After(LongTimeout):
		return fmt.Errorf("eddytest: stream: %d messages sent after %v", s.Sent(), LongTimeout)
	}
}

// Stop ends the stream after the chunk in flight and waits for it; it
// returns the first error. Calling it again does nothing more.
func (s *Stream) Stop() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.err
}
