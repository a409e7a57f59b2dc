package daemon

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
)

// The broker's own count of messages it dropped: a reading the broker
// dropped (its queue for eddy's disconnected session was full) never
// reaches eddy, so only the broker can say it happened. eddy reads the
// counter from mosquitto's $SYS tree (mqttio.SysWatcher) or from the
// embedded broker (mqttio.Embedded.Dropped), and shows it in the overview
// (broker), in /metrics (eddy_broker_messages_dropped_total), on the web
// page, and logs a warning each time it grows.

// brokerPollInterval is how often the embedded broker's counter is read.
// mosquitto pushes its counter every sys_interval seconds instead.
var brokerPollInterval = time.Second

// BrokerOverview is the "broker" object of GET /api/v1/overview.
type BrokerOverview struct {
	// Kind is "embedded" or "external" (mqtt.broker is a URL).
	Kind string `json:"kind"`
	// Version is the broker's $SYS/broker/version ("mosquitto version
	// 2.0.11"); empty for the embedded broker and for a broker that does not
	// publish it.
	Version string `json:"version,omitempty"`
	// DropsReported is true when the broker's drop counter is known: always
	// for the embedded broker; for mosquitto once it has published the
	// counter, which it does only after its first drop (so false with
	// Version set means none so far).
	DropsReported bool `json:"drops_reported"`
	// MessagesDropped is the broker's own counter: messages it did not
	// deliver to some client, every client of the broker counted, since the
	// broker started (a broker restart sets it back to 0).
	MessagesDropped int64 `json:"messages_dropped"`
	// DroppedSeen is how much the counter grew while this eddy watched it
	// (not counting what it held at the first read).
	DroppedSeen int64 `json:"messages_dropped_seen"`
	// LastDropAt is when eddy last saw the counter grow.
	LastDropAt *time.Time `json:"last_drop_at,omitempty"`
}

// brokerDrops is what the broker watcher has read. Its zero value reports
// nothing (no watcher yet).
type brokerDrops struct {
	mu       sync.Mutex
	kind     string
	version  string
	reported bool
	dropped  int64
	seen     int64
	lastDrop time.Time
	lg       *slog.Logger
}

// note records the broker's counter n read at now and logs a warning when
// it is above 0 at the first read (drops since the broker started, e.g.
// while eddy was stopped) or grew since the last one. A smaller value than
// before is a restarted broker: it becomes the new base without a warning.
func (b *brokerDrops) note(n int64, now time.Time) {
	b.mu.Lock()
	prev, first := b.dropped, !b.reported
	b.dropped, b.reported = n, true
	var delta int64
	if !first && n > prev {
		delta = n - prev
		b.seen += delta
		b.lastDrop = now
	}
	kind, version, lg := b.kind, b.version, b.lg
	b.mu.Unlock()
	if lg == nil {
		return
	}
	const hint = "readings were lost before they reached eddy (the broker's queue for a disconnected client was full); " +
		"raise max_queued_messages/max_queued_bytes, see /usr/share/doc/eddy/broker.md"
	switch {
	case first && n > 0:
		lg.Warn("MQTT broker has dropped messages since it started: "+hint,
			"broker", kind, "version", version, "dropped_total", n)
	case delta > 0:
		lg.Warn("MQTT broker dropped messages: "+hint,
			"broker", kind, "version", version, "dropped", delta, "dropped_total", n)
	}
}

func (b *brokerDrops) setVersion(v string) {
	b.mu.Lock()
	b.version = v
	b.mu.Unlock()
}

// overview is nil until a watcher runs.
func (b *brokerDrops) overview() *BrokerOverview {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kind == "" {
		return nil
	}
	o := &BrokerOverview{Kind: b.kind, Version: b.version, DropsReported: b.reported,
		MessagesDropped: b.dropped, DroppedSeen: b.seen}
	if !b.lastDrop.IsZero() {
		t := b.lastDrop
		o.LastDropAt = &t
	}
	return o
}

// addBrokerWatch follows the broker's drop counter once the broker is up:
// the embedded broker's by reading it every brokerPollInterval, an
// external broker's through a $SYS subscription of its own (client id
// mqtt.client_id + "-sys", clean session). A broker that refuses or never
// answers the subscription only leaves the counter unreported.
func (d *Daemon) addBrokerWatch(g *run.Group, r *runState) {
	ctx, interrupt := r.actorContext()
	r.clients.Add(1)
	g.Add(func() error {
		defer r.clients.Done()
		if !r.awaitBroker(ctx) {
			return nil
		}
		b := &d.brokerDrops
		b.mu.Lock()
		b.lg = d.log.With("component", "broker")
		b.mu.Unlock()
		if d.broker != nil {
			return d.watchEmbedded(ctx, d.broker)
		}
		return d.watchSys(ctx)
	}, interrupt)
}

func (d *Daemon) watchEmbedded(ctx context.Context, e *mqttio.Embedded) error {
	b := &d.brokerDrops
	b.mu.Lock()
	b.kind = "embedded"
	b.mu.Unlock()
	t := time.NewTicker(brokerPollInterval)
	defer t.Stop()
	for {
		b.note(e.Dropped(), time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *Daemon) watchSys(ctx context.Context) error {
	b := &d.brokerDrops
	b.mu.Lock()
	b.kind = "external"
	b.mu.Unlock()
	o, err := d.clientOptions("-sys")
	if err != nil {
		return err
	}
	w := mqttio.NewSysWatcher(o, func(st mqttio.SysStats) {
		if st.Version != "" {
			b.setVersion(st.Version)
		}
		if st.DroppedSeen {
			b.note(st.Dropped, time.Now())
		}
	})
	if err := w.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		d.log.Warn("MQTT broker drop counter not watched", "err", err)
		<-ctx.Done()
		return nil
	}
	<-ctx.Done()
	return w.Close()
}

var descBrokerDropped = desc("eddy_broker_messages_dropped_total",
	"The MQTT broker's own count of messages it dropped (a client's queue was full), all clients, since the broker started: "+
		"mosquitto's $SYS/broker/publish/messages/dropped or the embedded broker's counters. "+
		"Absent until the broker has reported it (mosquitto: after its first drop).")

// brokerCollector exports the broker's drop counter.
type brokerCollector struct{ d *Daemon }

func (c brokerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descBrokerDropped }

func (c brokerCollector) Collect(ch chan<- prometheus.Metric) {
	if o := c.d.brokerDrops.overview(); o != nil && o.DropsReported {
		ch <- prometheus.MustNewConstMetric(descBrokerDropped, prometheus.CounterValue, float64(o.MessagesDropped))
	}
}
