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
	ack      Acker
}

// Ack sends the PUBACK (QoS 1) or PUBREC (QoS 2). Call it once the
// message is durable, in arrival order, from any goroutine; calling it
// again does nothing. It does nothing at QoS 0 (and for a Message the
// Source did not make).
func (m Message) Ack() { m.ack.Ack() }

// Acker returns what acknowledges m: m.Ack, to keep or to pass to AckAll.
func (m Message) Acker() Acker { return m.ack }

// Acker acknowledges one message (Message.Acker); the zero Acker does
// nothing. It is a value: keeping one allocates nothing.
type Acker struct {
	s   *Source
	w   *coalescer   // the connection the message came on (direct path), or nil
	pm  paho.Message // paho's message (paho path), or nil
	tag uint32       // s.acks[id] while the message is not acknowledged
	id  uint16
	qos byte
}

// Ack acknowledges the message once; see Message.Ack.
func (a Acker) Ack() {
	if !a.claim() {
		return
	}
	if a.w == nil {
		a.pm.Ack()
		return
	}
	var b [4]byte
	_, _ = a.w.write(appendAck(b[:0], a))
}

// claim reports whether this is the first call for the message (and a
// message that needs an acknowledgement at all), counting it.
func (a Acker) claim() bool {
	if a.s == nil || a.qos == 0 || !a.s.acks[a.id].CompareAndSwap(a.tag, a.tag|1) {
		return false
	}
	a.s.acked.Add(1)
	return true
}

// AckAll acknowledges every message of as, in order, like calling Ack on
// each; the acknowledgements of one connection go to it in one write.
func AckAll(as []Acker) {
	var buf []byte
	for i := 0; i < len(as); {
		w := as[i].w
		if w == nil {
			as[i].Ack()
			i++
			continue
		}
		buf = buf[:0]
		for ; i < len(as) && as[i].w == w; i++ {
			if as[i].claim() {
				buf = appendAck(buf, as[i])
			}
		}
		if len(buf) > 0 {
			// A write error (the connection is gone) drops them, as paho
			// drops the acknowledgements of a lost connection: the broker
			// redelivers those messages.
			_, _ = w.write(buf)
		}
	}
}

// appendAck appends the PUBACK (QoS 1) or PUBREC (QoS 2) of a.
func appendAck(b []byte, a Acker) []byte {
	t := byte(0x40) // PUBACK
	if a.qos == 2 {
		t = 0x50 // PUBREC
	}
	return append(b, t, 2, byte(a.id>>8), byte(a.id))
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
	// acks holds, per packet id, the tag of the newest message received
	// with it: even while it is not acknowledged, odd once it is. An
	// Acker acknowledges only if the tag is still its own, so a second
	// call, or a call after the broker reused the id, does nothing.
	acks *[1 << 16]atomic.Uint32
	// topics shares the topic strings of the direct receive path; only
	// the goroutine reading the connection uses it.
	topics map[string]string
	slab   []byte // see own; only the reading goroutine uses it
}

// NewSource returns a Source for o and subs; h is called for every message.
// Nothing connects before Start.
func NewSource(o ClientOptions, subs []Subscription, h Handler) *Source {
	o = o.withDefaults()
	return &Source{
		o: o, subs: append([]Subscription(nil), subs...), h: h, conn: newConn(o, "source"), stop: make(chan struct{}),
		acks: new([1 << 16]atomic.Uint32), topics: make(map[string]string),
	}
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
	switch {
	case plainTCP(s.o.Broker) && s.o.StoreDir == "":
		po.SetCustomOpenConnectionFn(s.directTCP)
	case plainTCP(s.o.Broker):
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

// dispatch hands a message paho received to the handler (TLS, websocket,
// or a paho store; see directTCP for plain TCP).
func (s *Source) dispatch(_ paho.Client, pm paho.Message) {
	m := Message{Topic: pm.Topic(), Payload: pm.Payload(), PacketID: pm.MessageID(), Dup: pm.Duplicate(), QoS: pm.Qos()}
	m.ack = Acker{s: s, pm: pm, id: m.PacketID, qos: m.QoS}
	s.deliver(&m)
}

// deliver counts m, tags its Acker and calls the handler.
func (s *Source) deliver(m *Message) {
	s.received.Add(1)
	if m.Dup {
		s.dups.Add(1)
	}
	if m.QoS > 0 {
		a := &s.acks[m.PacketID]
		m.ack.tag = (a.Load() | 1) + 1
		a.Store(m.ack.tag)
	}
	s.h(*m)
}

// receive is the direct path's handler of a PUBLISH read from w's
// connection: topic and payload alias the read buffer.
func (s *Source) receive(w *coalescer, topic, payload []byte, id uint16, qos byte, dup bool) {
	m := Message{Topic: intern(s.topics, topic), Payload: s.own(payload), PacketID: id, Dup: dup, QoS: qos}
	m.ack = Acker{s: s, w: w, id: id, qos: qos}
	s.deliver(&m)
}

// slabSize is the size of the blocks the direct path cuts payloads from:
// one allocation serves hundreds of small messages.
const slabSize = 32 << 10

// own returns a copy of p the receiver owns, cut from s.slab unless p is
// large; the full slice expression keeps an append from reaching into the
// next payload.
func (s *Source) own(p []byte) []byte {
	switch {
	case len(p) == 0:
		return []byte{}
	case len(p) > slabSize/8:
		return append(make([]byte, 0, len(p)), p...)
	}
	if cap(s.slab)-len(s.slab) < len(p) {
		s.slab = make([]byte, 0, slabSize)
	}
	n := len(s.slab)
	s.slab = append(s.slab, p...)
	return s.slab[n:len(s.slab):len(s.slab)]
}

// maxTopics bounds the topics a Source keeps to share their strings.
const maxTopics = 4096

// intern returns topic as a string, the one in topics if it is there.
func intern(topics map[string]string, topic []byte) string {
	if t, ok := topics[string(topic)]; ok {
		return t
	}
	t := string(topic)
	if len(topics) < maxTopics {
		topics[t] = t
	}
	return t
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
