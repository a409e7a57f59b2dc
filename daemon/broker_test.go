package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/test/mqtttest"
)

// lockedBuffer is a log destination several goroutines write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// brokerDropped reads eddy_broker_messages_dropped_total from the daemon's
// registry; ok is false while it is absent.
func brokerDropped(t *testing.T, d *Daemon) (v float64, ok bool) {
	t.Helper()
	mfs, err := d.registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "eddy_broker_messages_dropped_total" {
			return mf.GetMetric()[0].GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// waitFor polls cond (every 20 ms) until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not synchronising
	}
}

func TestBrokerDropsNote(t *testing.T) {
	var logs lockedBuffer
	b := &brokerDrops{kind: "external", lg: slog.New(slog.NewTextHandler(&logs, nil))}
	if b.overview().DropsReported {
		t.Fatal("reported before any read")
	}
	t0 := time.Unix(1000, 0)
	b.note(0, t0)
	if logs.String() != "" {
		t.Fatalf("warned at 0: %s", logs.String())
	}
	b.note(4000, t0.Add(time.Second))
	b.note(4000, t0.Add(2*time.Second)) // unchanged: no second line
	b.note(10, t0.Add(3*time.Second))   // broker restarted: new base
	o := b.overview()
	if !o.DropsReported || o.MessagesDropped != 10 || o.DroppedSeen != 4000 || o.LastDropAt == nil || !o.LastDropAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("overview %+v", o)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "dropped=4000") {
		t.Fatalf("want one warning with dropped=4000:\n%s", logs.String())
	}
	// Non-zero at the first read: drops from before eddy watched.
	logs = lockedBuffer{}
	b = &brokerDrops{kind: "external", lg: slog.New(slog.NewTextHandler(&logs, nil))}
	b.note(7, t0)
	if o := b.overview(); o.MessagesDropped != 7 || o.DroppedSeen != 0 || !strings.Contains(logs.String(), "since it started") {
		t.Fatalf("overview %+v, log:\n%s", o, logs.String())
	}
}

// The embedded broker's drop counter reaches the overview, /metrics and
// the log: a QoS 0 subscriber that stops reading makes it drop.
func TestEmbeddedBrokerDropsInOverview(t *testing.T) {
	defer func(v time.Duration) { brokerPollInterval = v }(brokerPollInterval)
	brokerPollInterval = 20 * time.Millisecond
	var logs lockedBuffer
	d, err := New(inProcessConfig(t, t.TempDir()), slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	done := startRun(t, d)
	waitFor(t, 10*time.Second, "the broker in the overview", func() bool { return d.overview().Broker != nil })
	if o := d.overview().Broker; o.Kind != "embedded" || !o.DropsReported || o.MessagesDropped != 0 {
		t.Fatalf("before drops: %+v", o)
	}
	if v, ok := brokerDropped(t, d); !ok || v != 0 {
		t.Fatalf("metric before drops: %v %v", v, ok)
	}

	stuck := rawSubscribe(t, d.broker.Addr(), "stuck", "flood/#")
	defer stuck.Close()
	// The flood goes over a bare socket too: QoS 0 PUBLISH packets, no
	// client library whose goroutines could outlive the test.
	flood := rawConnect(t, d.broker.Addr(), "flood")
	defer flood.Close()
	topic := "flood/x"
	body := strings.Repeat("y", 256)
	rl := 2 + len(topic) + len(body) // < 16384: two-byte remaining length
	pk := append([]byte{0x30, byte(rl&0x7f | 0x80), byte(rl >> 7)}, binary.BigEndian.AppendUint16(nil, uint16(len(topic)))...)
	pk = append(append(pk, topic...), body...)
	_ = flood.SetWriteDeadline(time.Now().Add(time.Minute))
	for i := 0; d.broker.Dropped() == 0; i++ {
		if i == 1_000_000 {
			t.Fatal("1000000 messages to a stuck subscriber and no drop")
		}
		if _, err := flood.Write(pk); err != nil {
			t.Fatal(err)
		}
	}
	_ = flood.Close()
	waitFor(t, 10*time.Second, "the drops in the overview", func() bool {
		o := d.overview().Broker
		v, _ := brokerDropped(t, d)
		return o.MessagesDropped > 0 && o.DroppedSeen == o.MessagesDropped && v > 0 && strings.Contains(logs.String(), "MQTT broker dropped messages")
	})
	t.Logf("overview broker: %+v", d.overview().Broker)
	d.Stop() // the stuck client stays: it must not hold the broker's close
	if err := runResult(t, done); err != nil {
		t.Fatal(err)
	}
}

// With mosquitto, eddy reads the broker's $SYS drop counter: another
// persistent client's queue overflows while it is away (max_queued_messages
// 10, 50 published), and the overview and /metrics show the 40 dropped.
func TestMosquittoDropsInOverview(t *testing.T) {
	b := mqtttest.Start(t, mqtttest.WithConfig("sys_interval 1", "max_queued_messages 10", "max_inflight_messages 20"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pub := mqttio.NewPublisher(mqttio.ClientOptions{Broker: b.URL(), ClientID: "plant", CleanSession: true})
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// A persistent session subscribed at QoS 1 that goes away (a bare
	// client: SUBACK, DISCONNECT, nothing in flight).
	away := rawSubscribeQoS(rawConnectSession(t, b.Addr(), "away", false), t, "plant/#", 1)
	if _, err := away.Write([]byte{0xe0, 0}); err != nil { // DISCONNECT
		t.Fatal(err)
	}
	// The broker closes the connection once it has taken the DISCONNECT:
	// from then on the session is offline.
	_ = away.SetReadDeadline(time.Now().Add(time.Minute))
	if n, err := io.Copy(io.Discard, away); err != nil || n != 0 {
		t.Fatalf("after DISCONNECT: %d bytes, %v; want EOF", n, err)
	}
	away.Close()

	d, err := New(inProcessConfigBroker(t, t.TempDir(), b.URL()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	done := startRun(t, d)
	for i := 0; i < 50; i++ {
		if err := pub.Publish(ctx, "plant/t", fmt.Appendf(nil, "%d", i), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "mosquitto's drops in the overview", func() bool {
		o := d.overview().Broker
		return o != nil && o.MessagesDropped == 40
	})
	o := d.overview().Broker
	if o.Kind != "external" || !strings.HasPrefix(o.Version, "mosquitto version ") || !o.DropsReported {
		t.Fatalf("overview broker %+v", o)
	}
	if v, ok := brokerDropped(t, d); !ok || v != 40 {
		t.Fatalf("eddy_broker_messages_dropped_total = %v (present %v), want 40", v, ok)
	}
	d.Stop()
	if err := runResult(t, done); err != nil {
		t.Fatal(err)
	}
}

// rawConnect connects with MQTT 3.1.1 over a bare socket (clean session,
// keep-alive off) and reads the CONNACK.
func rawConnect(t *testing.T, addr, id string) net.Conn { return rawConnectSession(t, addr, id, true) }

// rawConnectSession is rawConnect with a persistent session unless clean.
func rawConnectSession(t *testing.T, addr, id string, clean bool) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	flags := byte(0x00)
	if clean {
		flags = 0x02
	}
	vh := append(mqttString("MQTT"), 4, flags, 0, 0) // level 4, keep-alive 0
	vh = append(vh, mqttString(id)...)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append([]byte{0x10, byte(len(vh))}, vh...)); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 4)
	if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 0x20 || resp[3] != 0 {
		t.Fatalf("raw client: CONNACK %x: %v", resp, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

func mqttString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

// rawSubscribe is rawConnect, then a QoS 0 subscription to filter; after
// the SUBACK it reads nothing more.
func rawSubscribe(t *testing.T, addr, id, filter string) net.Conn {
	t.Helper()
	return rawSubscribeQoS(rawConnect(t, addr, id), t, filter, 0)
}

// rawSubscribeQoS subscribes c to filter at qos and reads the SUBACK.
func rawSubscribeQoS(c net.Conn, t *testing.T, filter string, qos byte) net.Conn {
	t.Helper()
	sb := append([]byte{0, 1}, mqttString(filter)...) // packet id 1
	sb = append(sb, qos)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append([]byte{0x82, byte(len(sb))}, sb...)); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 5)
	if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 0x90 || resp[4] != qos {
		t.Fatalf("raw client: SUBACK %x: %v", resp, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}
