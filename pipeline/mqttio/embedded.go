package mqttio

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DefaultEmbeddedListen is where StartEmbedded listens when listen is "".
const DefaultEmbeddedListen = "127.0.0.1:1883"

// Limits of the embedded broker. mochi holds at most 65535 unacknowledged
// QoS 1/2 messages per client (packet ids are 16 bits), and its queue of
// pending writes per client is allocated up front (8 bytes a slot).
const (
	embeddedWritesPending = 1 << 16 // per client: 512 KiB of channel buffer
	embeddedMaxInflight   = math.MaxUint16
	// embeddedHighWater is the in-flight count of a connected subscriber
	// above which a publisher waits (back-pressure) before its message is
	// routed, so a slow subscriber slows publishers instead of losing
	// messages at embeddedMaxInflight.
	embeddedHighWater = 1 << 14
	// embeddedMaxStall bounds one such wait, so a subscriber that never
	// acks cannot stall publishers past their keep-alive; after it the
	// message is routed anyway and may be dropped (and counted).
	embeddedMaxStall = 5 * time.Second
	// embeddedMessageExpiry bounds how long a message waits for an offline
	// persistent session before it is dropped (and counted).
	embeddedMessageExpiry = 7 * 24 * 60 * 60
	// embeddedCloseWrite bounds the writes to clients once Close has begun.
	embeddedCloseWrite = time.Second
)

// Embedded is an in-process MQTT broker (mochi-mqtt) on one TCP listener,
// for appliances without a broker of their own. It accepts every client
// (allow-all auth: bind it to loopback or a trusted network) and keeps no
// state across restarts. Its limits are raised so it does not drop messages
// on its own; every drop it still makes is counted (Dropped) and logged.
type Embedded struct {
	srv  *mqtt.Server
	hook *embeddedHook
	addr string
	lg   *slog.Logger
	once sync.Once
}

// StartEmbedded starts the broker listening on listen (host:port; "" means
// DefaultEmbeddedListen; port 0 picks a free port, see Addr). logger nil
// discards the broker's logs.
func StartEmbedded(listen string, logger *slog.Logger) (*Embedded, error) {
	if listen == "" {
		listen = DefaultEmbeddedListen
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	lg := logger.With("mqtt", "embedded")
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = embeddedWritesPending
	caps.MaximumInflight = embeddedMaxInflight
	caps.ReceiveMaximum = math.MaxUint16
	caps.MaximumMessageExpiryInterval = embeddedMessageExpiry
	srv := mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		Logger:                   lg,
		ClientNetWriteBufferSize: 32 << 10,
		ClientNetReadBufferSize:  32 << 10,
		InlineClient:             false,
	})
	h := &embeddedHook{srv: srv, lg: lg, stop: make(chan struct{})}
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("mqttio: embedded broker: add auth hook: %w", err)
	}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("mqttio: embedded broker: add hook: %w", err)
	}
	// Listen here rather than in mochi's Init so that a busy port is an
	// error of StartEmbedded, and port 0 is resolved before Serve.
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("mqttio: embedded broker: listen on %s: %w", listen, err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("mqttio: embedded broker: listen on %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("mqttio: embedded broker: serve: %w", err)
	}
	e := &Embedded{srv: srv, hook: h, addr: tcp.Address(), lg: lg}
	lg.Info("embedded mqtt broker listening", "addr", e.addr)
	return e, nil
}

// Addr is the listener's host:port.
func (e *Embedded) Addr() string { return e.addr }

// URL is tcp://Addr.
func (e *Embedded) URL() string { return "tcp://" + e.addr }

// EmbeddedStats are the embedded broker's figures.
type EmbeddedStats struct {
	Clients         int64 // connected now
	Inflight        int64 // unacknowledged QoS 1/2 messages, all clients
	Received        int64 // PUBLISH packets received
	Sent            int64 // PUBLISH packets sent
	DroppedQueue    int64 // a client's queue of pending writes was full
	DroppedInflight int64 // a client had embeddedMaxInflight unacknowledged, or no packet id left
	Expired         int64 // waited longer than the maximum message expiry
	Stalls          int64 // publishes held back for a slow subscriber
}

// Stats returns the broker's figures.
func (e *Embedded) Stats() EmbeddedStats {
	i := e.srv.Info
	return EmbeddedStats{
		Clients:         atomic.LoadInt64(&i.ClientsConnected),
		Inflight:        atomic.LoadInt64(&i.Inflight),
		Received:        atomic.LoadInt64(&i.MessagesReceived),
		Sent:            atomic.LoadInt64(&i.MessagesSent),
		DroppedQueue:    atomic.LoadInt64(&i.MessagesDropped),
		DroppedInflight: atomic.LoadInt64(&i.InflightDropped),
		Expired:         e.hook.expired.Load(),
		Stalls:          e.hook.stalls.Load(),
	}
}

// Dropped counts every message the broker failed to deliver to a
// subscriber: queue full, in-flight limit, packet ids exhausted, expired.
// Messages a clean session discards when it ends are not drops.
func (e *Embedded) Dropped() int64 {
	s := e.Stats()
	return s.DroppedQueue + s.DroppedInflight + s.Expired
}

// Close disconnects every client and stops the broker; a client that does
// not read gets up to embeddedCloseWrite (1 s) to take its DISCONNECT. It is
// idempotent.
func (e *Embedded) Close() error {
	var err error
	e.once.Do(func() {
		close(e.hook.stop) // release publishers held back by the hook first
		// mochi writes a DISCONNECT to every client on Close, under the
		// client's write lock, and its write loop holds that lock while
		// blocked on a socket the peer no longer reads (no write deadline):
		// one hung client would hold Close, and eddy's stop, for ever.
		// Bound every write from here on.
		deadline := time.Now().Add(embeddedCloseWrite)
		for _, cl := range e.srv.Clients.GetAll() {
			if c := cl.Net.Conn; c != nil {
				_ = c.SetWriteDeadline(deadline)
			}
		}
		err = e.srv.Close()
		e.lg.Info("embedded mqtt broker stopped", "dropped", e.Dropped())
	})
	return err
}

// embeddedHook counts and logs drops, and holds back a publisher while a
// connected subscriber of its topic is far behind.
type embeddedHook struct {
	mqtt.HookBase
	srv     *mqtt.Server
	lg      *slog.Logger
	stop    chan struct{}
	expired atomic.Int64
	stalls  atomic.Int64
	lastLog atomic.Int64 // unix nano of the last drop warning
}

func (h *embeddedHook) ID() string { return "eddy-drops-and-backpressure" }

func (h *embeddedHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublish, mqtt.OnPublishDropped, mqtt.OnQosDropped, mqtt.OnPacketIDExhausted}, []byte{b})
}

// OnPublishDropped: the subscriber's queue of pending writes was full
// (mochi counts it in Info.MessagesDropped).
func (h *embeddedHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.warn("embedded broker dropped a message: client's write queue full", cl, pk)
}

// OnPacketIDExhausted: no free packet id for the subscriber (counted by
// mochi in Info.InflightDropped).
func (h *embeddedHook) OnPacketIDExhausted(cl *mqtt.Client, pk packets.Packet) {
	h.warn("embedded broker dropped a message: client has no free packet id", cl, pk)
}

// OnQosDropped is called for expired in-flight messages, and also when a
// clean session ends or a session is taken over (not losses). mochi's
// expiry sweep calls it twice per message, the second time with a packet
// carrying only the id; that call is the one counted.
func (h *embeddedHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type == 0 && pk.TopicName == "" {
		h.expired.Add(1)
		h.warn("embedded broker dropped a message: expired before delivery", cl, pk)
	}
}

func (h *embeddedHook) warn(msg string, cl *mqtt.Client, pk packets.Packet) {
	now := time.Now().UnixNano()
	last := h.lastLog.Load()
	if now-last < int64(time.Second) || !h.lastLog.CompareAndSwap(last, now) {
		return
	}
	i := h.srv.Info
	h.lg.Warn(msg, "client", cl.ID, "topic", pk.TopicName,
		"dropped_queue", atomic.LoadInt64(&i.MessagesDropped),
		"dropped_inflight", atomic.LoadInt64(&i.InflightDropped),
		"expired", h.expired.Load())
}

// OnPublish runs on the publisher's read goroutine before the message is
// routed. While a connected subscriber of the topic has more than
// embeddedHighWater unacknowledged messages it waits (at most
// embeddedMaxStall), so the publisher's PUBACKs, and so the publisher,
// slow down to the subscriber's pace.
func (h *embeddedHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if atomic.LoadInt64(&h.srv.Info.Inflight) < embeddedHighWater {
		return pk, nil // no client can be over the mark
	}
	deadline := time.Now().Add(embeddedMaxStall)
	stalled := false
	for h.behind(cl, pk.TopicName) {
		if !stalled {
			stalled = true
			h.stalls.Add(1)
		}
		if time.Now().After(deadline) {
			h.lg.Warn("embedded broker: subscriber not keeping up; routing without waiting", "publisher", cl.ID, "topic", pk.TopicName)
			break
		}
		select {
		case <-h.stop:
			return pk, nil
		case <-time.After(time.Millisecond):
		}
	}
	return pk, nil
}

// behind reports whether a connected subscriber of topic, other than the
// publisher itself, is over the high-water mark.
func (h *embeddedHook) behind(pub *mqtt.Client, topic string) bool {
	subs := h.srv.Topics.Subscribers(topic)
	over := func(id string) bool {
		if id == pub.ID {
			return false // its acks arrive on the goroutine we would block
		}
		c, ok := h.srv.Clients.Get(id)
		return ok && !c.Closed() && c.State.Inflight.Len() >= embeddedHighWater
	}
	for id := range subs.Subscriptions {
		if over(id) {
			return true
		}
	}
	for _, group := range subs.Shared {
		for id := range group {
			if over(id) {
				return true
			}
		}
	}
	return false
}
