package mqttio

import (
	"context"
	"strconv"
	"strings"
	"sync"
)

// mosquitto's $SYS topics read by SysWatcher. mosquitto publishes them,
// retained, every sys_interval seconds (default 10), and a counter only once
// it has changed from 0: a broker that never dropped a message never
// publishes SysDroppedTopic.
const (
	SysDroppedTopic = "$SYS/broker/publish/messages/dropped"
	SysVersionTopic = "$SYS/broker/version"
)

// SysStats is what a SysWatcher has read from the broker's $SYS tree.
type SysStats struct {
	// Version is the broker's $SYS/broker/version ("mosquitto version
	// 2.0.11"); "" until the broker sent it (brokers other than mosquitto
	// may never).
	Version string
	// Dropped is the broker's count of messages it did not deliver because a
	// client's queue (max_queued_messages, max_queued_bytes) was full,
	// counted since the broker started; it goes back to 0 when the broker
	// restarts.
	Dropped int64
	// DroppedSeen is true once the broker has published its counter (only
	// after its first drop).
	DroppedSeen bool
	Connected   bool
}

// SysWatcher subscribes to the broker's drop counter and version in
// mosquitto's $SYS tree, on a connection of its own (clean session, QoS 0),
// so that drops the broker makes for eddy's persistent session while eddy
// is away are seen. The broker must let the client read $SYS/broker/# (an
// acl_file needs `topic read $SYS/broker/#` for eddy's user).
type SysWatcher struct {
	src *Source

	mu sync.Mutex
	st SysStats
	// onUpdate, when set, is called after every $SYS message read.
	onUpdate func(SysStats)
}

// NewSysWatcher returns a watcher for the broker of o; o.CleanSession is
// forced true (nothing of $SYS needs to wait for eddy). onUpdate, if not
// nil, is called on paho's dispatch goroutine with the figures after each
// $SYS message the broker sends (Connected is not filled in); it must not
// block.
func NewSysWatcher(o ClientOptions, onUpdate func(SysStats)) *SysWatcher {
	o.CleanSession = true
	w := &SysWatcher{onUpdate: onUpdate}
	w.src = NewSource(o, []Subscription{{Filter: SysDroppedTopic, QoS: 0}, {Filter: SysVersionTopic, QoS: 0}}, w.handle)
	return w
}

// Start connects; see Source.Start.
func (w *SysWatcher) Start(ctx context.Context) error { return w.src.Start(ctx) }

// Close disconnects. It is idempotent.
func (w *SysWatcher) Close() error { return w.src.Close() }

// Stats returns what has been read so far.
func (w *SysWatcher) Stats() SysStats {
	w.mu.Lock()
	st := w.st
	w.mu.Unlock()
	st.Connected = w.src.Connected()
	return st
}

func (w *SysWatcher) handle(m Message) {
	m.Ack()
	v := strings.TrimSpace(string(m.Payload))
	w.mu.Lock()
	switch m.Topic {
	case SysVersionTopic:
		w.st.Version = v
	case SysDroppedTopic:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			w.mu.Unlock()
			w.src.conn.lg.Warn("mqtt broker published a drop counter that is not a number", "topic", m.Topic, "payload", v)
			return
		}
		w.st.Dropped, w.st.DroppedSeen = n, true
	default:
		w.mu.Unlock()
		return
	}
	st := w.st
	w.mu.Unlock()
	if w.onUpdate != nil {
		w.onUpdate(st)
	}
}
