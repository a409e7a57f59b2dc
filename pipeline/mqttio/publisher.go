package mqttio

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// PublisherStats are a Publisher's figures since NewPublisher.
type PublisherStats struct {
	Published   int64 // Publish calls handed to paho
	Acked       int64 // confirmed by the broker (QoS 0: written)
	Failed      int64 // failed or unconfirmed; reported by Flush
	Outstanding int64 // in the window now
	Connects    int64
	Lost        int64
}

// Publisher publishes without waiting for each acknowledgement: up to
// MaxInflight messages are outstanding at once, and Flush waits for all of
// them. Create it with NewPublisher; it connects on Start or on the first
// Publish, and keeps reconnecting until Close.
type Publisher struct {
	o    ClientOptions
	conn *conn

	startMu sync.Mutex
	started bool
	client  paho.Client
	pending chan pending  // the window; a reaper confirms entries in order
	sendMu  sync.RWMutex  // held (read) while sending to pending; Close takes it to close pending
	stop    chan struct{} // closed by Close
	reaped  chan struct{} // closed when the reaper has exited

	// turn serializes Publish calls, so window order is sequence order.
	turn chan struct{}

	// seq numbers messages as Publish hands them to paho; prefix is the
	// highest seq such that every message up to it is settled (early is
	// those settled ahead of an earlier one); settled counts them all.
	// Flush waits for prefix to reach the seq it started with.
	mu      sync.Mutex
	cond    *sync.Cond
	seq     uint64
	prefix  uint64
	early   map[uint64]bool
	settled uint64
	errs    []error // since the last Flush, at most a few
	nFailed int64   // since the last Flush

	published, acked, failed atomic.Int64
	closeOnce                sync.Once
}

type pending struct {
	seq   uint64
	tok   paho.Token
	gen   uint64
	lost  <-chan struct{}
	topic string
}

// NewPublisher returns a Publisher for o. Nothing connects before Start or
// the first Publish.
func NewPublisher(o ClientOptions) *Publisher {
	o = o.withDefaults()
	p := &Publisher{
		o:      o,
		conn:   newConn(o, "publisher"),
		stop:   make(chan struct{}),
		reaped: make(chan struct{}),
		turn:   make(chan struct{}, 1),
		early:  map[uint64]bool{},
	}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// Start validates the options and starts connecting; it does not wait for
// the connection. Calling it again does nothing.
func (p *Publisher) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.startMu.Lock()
	defer p.startMu.Unlock()
	select {
	case <-p.stop:
		return ErrClosed
	default:
	}
	if p.started {
		return nil
	}
	if err := p.o.Validate(); err != nil {
		return err
	}
	po, err := p.o.pahoOptions()
	if err != nil {
		return err
	}
	p.conn.install(po, nil)
	p.client = paho.NewClient(po)
	p.pending = make(chan pending, p.o.MaxInflight)
	go p.reap()
	p.conn.start(p.client, p.stop)
	p.started = true
	p.conn.lg.Info("mqtt publisher connecting", "options", p.o, "max_inflight", p.o.MaxInflight)
	return nil
}

// Publish hands one message to paho and returns without waiting for the
// broker's acknowledgement. It blocks while MaxInflight messages are
// outstanding, and while the client is not connected (a message published
// during a reconnect would be confirmed by nothing); ctx bounds both waits.
// Errors of the message itself come from Flush. Concurrent calls are
// serialized.
func (p *Publisher) Publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	if qos > 2 {
		return fmt.Errorf("mqttio: publish to %s: qos %d out of range 0..2", topic, qos)
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	if err := p.conn.waitUp(ctx, p.stop); err != nil {
		if errors.Is(err, ErrClosed) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	select {
	case p.turn <- struct{}{}:
	case <-p.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.turn }()
	gen, lost := p.conn.generation()
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.mu.Unlock()
	tok := p.client.Publish(topic, qos, retain, payload)
	p.published.Add(1)
	e := pending{seq: seq, tok: tok, gen: gen, lost: lost, topic: topic}
	if p.enqueue(ctx, e) {
		return nil
	}
	// The message is with paho but not in the window: settle it on its own.
	go func() {
		<-tok.Done()
		p.settle(e, tok.Error())
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	return ErrClosed
}

// enqueue puts e in the window, waiting for room; false if ctx ended or
// the Publisher closed first.
func (p *Publisher) enqueue(ctx context.Context, e pending) bool {
	p.sendMu.RLock()
	defer p.sendMu.RUnlock()
	select {
	case <-p.stop:
		return false
	default:
	}
	select {
	case p.pending <- e:
		return true
	default:
	}
	select {
	case p.pending <- e:
		return true
	case <-p.stop:
	case <-ctx.Done():
	}
	return false
}

// reap settles window entries in publish order.
func (p *Publisher) reap() {
	defer close(p.reaped)
	for e := range p.pending {
		var err error
		select {
		case <-e.tok.Done():
			err = e.tok.Error()
			if err == nil {
				if g, _ := p.conn.generation(); g != e.gen {
					// paho completes a resent message's old token without
					// an acknowledgement; nothing proves the broker has it.
					err = ErrUnconfirmed
				}
			}
		case <-e.lost:
			err = ErrUnconfirmed
		}
		p.settle(e, err)
	}
}

func (p *Publisher) settle(e pending, err error) {
	p.mu.Lock()
	p.settled++
	if e.seq == p.prefix+1 {
		p.prefix++
		for p.early[p.prefix+1] {
			delete(p.early, p.prefix+1)
			p.prefix++
		}
	} else {
		p.early[e.seq] = true
	}
	if err != nil {
		p.nFailed++
		if len(p.errs) < 3 && !containsErr(p.errs, err) {
			p.errs = append(p.errs, fmt.Errorf("publish to %s: %w", e.topic, err))
		}
		p.failed.Add(1)
	} else {
		p.acked.Add(1)
	}
	p.mu.Unlock()
	p.cond.Broadcast()
}

// containsErr reports whether errs already holds a failure with err's cause.
func containsErr(errs []error, err error) bool {
	for _, e := range errs {
		if errors.Is(e, err) || strings.HasSuffix(e.Error(), ": "+err.Error()) {
			return true
		}
	}
	return false
}

// Flush waits until the broker has acknowledged every message whose
// Publish returned before Flush was called (PUBACK at QoS 1, PUBCOMP at
// QoS 2; written to the socket at QoS 0).
// It returns the errors of messages that failed or whose fate is unknown
// since the previous Flush (ErrUnconfirmed after a connection loss), or
// ctx's error.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	target := p.seq
	p.mu.Unlock()
	stopWake := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.cond.Broadcast()
	})
	defer stopWake()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.prefix < target {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("mqttio: flush: %d of %d messages unacknowledged: %w", p.seq-p.settled, p.seq, err)
		}
		p.cond.Wait()
	}
	if p.nFailed == 0 {
		return nil
	}
	err := fmt.Errorf("mqttio: flush: %d messages failed: %w", p.nFailed, errors.Join(p.errs...))
	p.errs, p.nFailed = nil, 0
	return err
}

// Connected reports whether the client has an open connection now.
func (p *Publisher) Connected() bool {
	p.startMu.Lock()
	cl := p.client
	p.startMu.Unlock()
	return cl != nil && cl.IsConnectionOpen()
}

// Stats returns the Publisher's figures.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	out := int64(p.seq - p.settled)
	p.mu.Unlock()
	return PublisherStats{
		Published:   p.published.Load(),
		Acked:       p.acked.Load(),
		Failed:      p.failed.Load(),
		Outstanding: out,
		Connects:    p.conn.connects.Load(),
		Lost:        p.conn.losses.Load(),
	}
}

// Close disconnects without waiting for outstanding messages (Flush first
// for that) and stops the reaper. Close is idempotent.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		p.startMu.Lock()
		close(p.stop)
		started := p.started
		p.startMu.Unlock()
		if !started {
			close(p.reaped)
			return
		}
		p.conn.disconnect(p.client) // completes every outstanding token with an error
		p.sendMu.Lock()             // no Publish is sending now, and none will
		close(p.pending)
		p.sendMu.Unlock()
		<-p.reaped
		p.conn.lg.Info("mqtt publisher closed", "published", p.published.Load(), "acked", p.acked.Load(), "failed", p.failed.Load())
	})
	return nil
}
