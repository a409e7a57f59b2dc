package mqttio

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Subscription is one topic filter and the maximum QoS asked for.
type Subscription struct {
	Filter string
	QoS    byte
}

// Message is one PUBLISH received by a Source.
type Message struct {
	Topic    string
	Payload  []byte // owned by the receiver
	PacketID uint16 // 0 at QoS 0; reused by the broker once acked
	Dup      bool   // the broker sent it before (not acked on an earlier connection)
	QoS      byte
	// Ack sends the PUBACK (QoS 1) or PUBREC (QoS 2). Call it once the
	// message is durable, in arrival order, from any goroutine; calling it
	// again does nothing. It is never nil (a no-op at QoS 0).
	Ack func()
}

// Handler receives messages in arrival order on one goroutine; see the
// package documentation for how long it may block.
type Handler func(m Message)

// SourceStats are a Source's figures since NewSource.
type SourceStats struct {
	Received   int64 // messages handed to the handler
	Duplicates int64 // of which had Dup set
	Acked      int64 // Ack calls (first call per message)
	Connects   int64 // successful connections, the first included
	Reconnects int64 // successful connections after the first
	Lost       int64 // connection losses
}

// Source subscribes to topic filters and hands every message to a Handler
// with manual acknowledgement. Create it with NewSource; Start connects.
type Source struct {
	o    ClientOptions
	subs []Subscription
	h    Handler

	mu      sync.Mutex
	started bool
	closed  bool
	client  paho.Client
	conn    *conn
	stop    chan struct{} // closed by Close

	received, dups, acked atomic.Int64
}

// NewSource returns a Source for o and subs; h is called for every message.
// Nothing connects before Start.
func NewSource(o ClientOptions, subs []Subscription, h Handler) *Source {
	o = o.withDefaults()
	return &Source{o: o, subs: append([]Subscription(nil), subs...), h: h, conn: newConn(o, "source"), stop: make(chan struct{})}
}

// Start validates the options and starts connecting. It returns once the
// first connection attempt is under way and does not fail when the broker
// is down: the client keeps retrying, with back-off capped by
// ReconnectMaxInterval, for as long as the Source is open. ctx bounds Start
// only; the connection lives until Close.
func (s *Source) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.o.Validate(); err != nil {
		return err
	}
	if len(s.subs) == 0 {
		return fmt.Errorf("mqttio: source needs at least one subscription")
	}
	for _, sub := range s.subs {
		if sub.QoS > 2 {
			return fmt.Errorf("mqttio: subscription %q: qos %d out of range 0..2", sub.Filter, sub.QoS)
		}
		if sub.Filter == "" {
			return fmt.Errorf("mqttio: subscription with an empty topic filter")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.started {
		return nil
	}
	po, err := s.o.pahoOptions()
	if err != nil {
		return err
	}
	po.SetAutoAckDisabled(true)
	if plainTCP(s.o.Broker) {
		po.SetCustomOpenConnectionFn(coalescedTCP)
	}
	if s.o.StoreDir == "" {
		po.SetStore(noStore{})
	}
	// Messages of a persistent session can arrive before the SUBSCRIBE of
	// this connection is answered; routing everything through the default
	// handler catches them.
	po.SetDefaultPublishHandler(s.dispatch)
	s.conn.install(po, s.subscribe)
	s.client = paho.NewClient(po)
	s.conn.start(s.client, s.stop)
	s.started = true
	s.conn.lg.Info("mqtt source connecting", "options", s.o, "subscriptions", len(s.subs))
	return nil
}

// subscribe (re)subscribes after every connect. A persistent session keeps
// the subscriptions anyway; a clean one needs them.
func (s *Source) subscribe(cl paho.Client) {
	filters := make(map[string]byte, len(s.subs))
	for _, sub := range s.subs {
		filters[sub.Filter] = sub.QoS
	}
	tok := cl.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(s.o.ConnectTimeout) {
		s.conn.lg.Error("mqtt subscribe: no SUBACK in time", "timeout", s.o.ConnectTimeout)
		return
	}
	if err := tok.Error(); err != nil {
		s.conn.lg.Error("mqtt subscribe failed", "err", err)
		return
	}
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return
	}
	for filter, granted := range st.Result() {
		switch {
		case granted == 0x80:
			s.conn.lg.Error("mqtt subscribe refused by the broker", "filter", filter)
		case granted < filters[filter]:
			s.conn.lg.Warn("mqtt broker granted a lower qos than asked", "filter", filter, "asked", filters[filter], "granted", granted)
		}
	}
}

func (s *Source) dispatch(_ paho.Client, pm paho.Message) {
	s.received.Add(1)
	if pm.Duplicate() {
		s.dups.Add(1)
	}
	var once atomic.Bool
	m := Message{
		Topic:    pm.Topic(),
		Payload:  pm.Payload(),
		PacketID: pm.MessageID(),
		Dup:      pm.Duplicate(),
		QoS:      pm.Qos(),
		Ack: func() {
			if once.CompareAndSwap(false, true) {
				pm.Ack()
				s.acked.Add(1)
			}
		},
	}
	s.h(m)
}

// Connected reports whether the client has an open connection now.
func (s *Source) Connected() bool {
	s.mu.Lock()
	cl := s.client
	s.mu.Unlock()
	return cl != nil && cl.IsConnectionOpen()
}

// Stats returns the Source's figures.
func (s *Source) Stats() SourceStats {
	c := s.conn.connects.Load()
	return SourceStats{
		Received:   s.received.Load(),
		Duplicates: s.dups.Load(),
		Acked:      s.acked.Load(),
		Connects:   c,
		Reconnects: max(c-1, 0),
		Lost:       s.conn.losses.Load(),
	}
}

// Close disconnects (DISCONNECT, then close) and waits, within a bound, for
// paho to stop. Messages not yet acked stay with the broker's persistent
// session and come again, Dup set. Close is idempotent.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	cl := s.client
	s.mu.Unlock()
	if cl != nil {
		s.conn.disconnect(cl)
		s.conn.lg.Info("mqtt source closed", "received", s.received.Load(), "acked", s.acked.Load())
	}
	return nil
}
