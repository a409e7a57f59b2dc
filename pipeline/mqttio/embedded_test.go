package mqttio

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEmbeddedListen(t *testing.T) {
	e, err := StartEmbedded("127.0.0.1:0", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !strings.HasPrefix(e.URL(), "tcp://127.0.0.1:") || strings.HasSuffix(e.Addr(), ":0") {
		t.Fatalf("Addr %q URL %q", e.Addr(), e.URL())
	}
	// The same port again is an error of StartEmbedded, not of Serve.
	if e2, err := StartEmbedded(e.Addr(), nil); err == nil {
		_ = e2.Close()
		t.Fatal("second broker on a busy port started")
	} else if !strings.Contains(err.Error(), "listen") {
		t.Fatalf("busy port error: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", e.Addr(), 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("closed broker still accepts connections")
	}
}

// TestEmbeddedCarriesLoadToSlowSubscriber: one publisher, one subscriber
// that acks in groups behind a slow "log" (as eddy's ingest does), 200k
// QoS 1 messages: every one arrives, once, in order, and the broker drops
// nothing.
//
// The subscriber reads as fast as messages come but acks late, so mochi's
// own accidental back-pressure (its write to a subscriber whose socket is
// full holds the lock the publisher's goroutine needs for a packet id)
// never sets in; without the back-pressure hook the subscriber's
// unacknowledged messages pass mochi's limit of 65535 during the hiccup
// and mochi drops the rest.
//
// The hiccup lasts until the broker has held the publisher back (or
// dropped something), not for a fixed time: on a loaded machine the
// publisher may not get embeddedHighWater ahead within any given time.
func TestEmbeddedCarriesLoadToSlowSubscriber(t *testing.T) {
	n := 200_000
	hiccup := true
	if testing.Short() {
		n, hiccup = 30_000, false
	}
	e := startEmbedded(t)
	ctx := ctxT(t, 3*time.Minute)

	// The "ingest log": the handler appends to a pending list and returns
	// at once; a writer acks everything pending every 5 ms, like a group
	// fsync, and once, after 20k messages, stalls (a slow disk) while
	// messages keep arriving, until the subscriber is so far behind that
	// the broker holds the publisher back.
	var (
		mu       sync.Mutex
		pendingM []Message
		next     int // next sequence number expected
		problems []string
		got      atomic.Int64
	)
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		written := 0
		for {
			select {
			case <-stopWriter:
				return
			case <-time.After(5 * time.Millisecond):
			}
			mu.Lock()
			group := pendingM
			pendingM = nil
			mu.Unlock()
			written += len(group)
			if hiccup && written >= 20_000 {
				// Wait on the broker's figures: the publisher stalled
				// (the subscriber has embeddedHighWater unacknowledged
				// messages), or the broker dropped (the test fails below).
				for e.Stats().Stalls == 0 && e.Dropped() == 0 && ctx.Err() == nil {
					select {
					case <-stopWriter:
						return
					case <-time.After(time.Millisecond):
					}
				}
				hiccup = false
			}
			for _, m := range group {
				m.Ack()
			}
		}
	}()
	o := opts(t, e.URL(), "load-sub")
	o.CleanSession = false
	src := startSource(t, o, []Subscription{{Filter: "load/#", QoS: 1}}, func(m Message) {
		if strings.HasSuffix(m.Topic, "/probe") {
			m.Ack()
			return
		}
		seq, err := strconv.Atoi(string(m.Payload[:8]))
		mu.Lock()
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("bad payload %q", m.Payload))
		case seq != next && len(problems) < 10:
			problems = append(problems, fmt.Sprintf("got %d, want %d (dup %v)", seq, next, m.Dup))
		}
		next = seq + 1
		pendingM = append(pendingM, m)
		mu.Unlock()
		got.Add(1)
	})
	waitSubscribedT(t, src, e.URL(), "load/probe")

	pub := startPublisher(t, opts(t, e.URL(), "load-pub"))
	body := []byte(strings.Repeat("x", 56))
	start := time.Now()
	for i := 0; i < n; i++ {
		p := append(fmt.Appendf(nil, "%08d", i), body...)
		if err := pub.Publish(ctx, "load/data", p, 1, false); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pubDone := time.Since(start)
	for got.Load() < int64(n) {
		if e.Dropped() > 0 || ctx.Err() != nil {
			t.Fatalf("received %d of %d; broker %+v", got.Load(), n, e.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	_ = src.Close()
	close(stopWriter)
	<-writerDone
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("order/duplicates: %v", problems)
	}
	if got.Load() != int64(n) {
		t.Fatalf("received %d, want %d", got.Load(), n)
	}
	st := e.Stats()
	if e.Dropped() != 0 {
		t.Fatalf("broker dropped %d: %+v", e.Dropped(), st)
	}
	if !testing.Short() && st.Stalls == 0 {
		t.Errorf("the subscriber never fell %d behind: the test did not exercise back-pressure", embeddedHighWater)
	}
	t.Logf("%d QoS 1 messages in %v (%.0f msg/s; publisher done after %v); broker %+v",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), pubDone.Round(time.Millisecond), st)
}

// TestEmbeddedCountsDrops: a QoS 0 subscriber that stops reading fills its
// write queue; the broker drops the rest and says so.
func TestEmbeddedCountsDrops(t *testing.T) {
	e := startEmbedded(t)
	stuck := rawSubscribe(t, e.Addr(), "stuck", "drop/#", 0)
	defer stuck.Close()

	pub := startPublisher(t, opts(t, e.URL(), "drop-pub"))
	ctx := ctxT(t, time.Minute)
	body := []byte(strings.Repeat("y", 256))
	const n = 150_000
	for i := 0; i < n; i++ {
		if err := pub.Publish(ctx, "drop/data", body, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().Received < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := e.Stats()
	if e.Dropped() == 0 || st.DroppedQueue == 0 {
		t.Fatalf("no drops counted: %+v", st)
	}
	t.Logf("stuck QoS 0 subscriber: %d of %d dropped and counted; %+v", e.Dropped(), n, st)
}

// TestEmbeddedCloseWithStuckClient: a subscriber that stopped reading
// with its socket full does not hold Close.
func TestEmbeddedCloseWithStuckClient(t *testing.T) {
	e, err := StartEmbedded("127.0.0.1:0", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stuck := rawSubscribe(t, e.Addr(), "stuck", "hang/#", 0)
	defer stuck.Close()
	pub := startPublisher(t, opts(t, e.URL(), "hang-pub"))
	ctx := ctxT(t, time.Minute)
	body := []byte(strings.Repeat("y", 256))
	for i := 0; e.Dropped() == 0; i++ { // its write queue full: the socket is too
		if i == 1_000_000 {
			t.Fatal("no drop after 1000000 messages to a stuck subscriber")
		}
		if err := pub.Publish(ctx, "hang/data", body, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	_ = pub.Close()
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close blocked by a client that does not read")
	}
}

// startEmbedded starts a broker that is closed after everything the test
// registers later.
func startEmbedded(t *testing.T) *Embedded {
	e, err := StartEmbedded("127.0.0.1:0", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// rawSubscribe connects with MQTT 3.1.1 over a bare socket (keep-alive
// off), subscribes, reads the SUBACK and then reads nothing more.
func rawSubscribe(t *testing.T, addr, id, filter string, qos byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	str := func(s string) []byte { return binary.BigEndian.AppendUint16(nil, uint16(len(s))) }
	var vh []byte
	vh = append(vh, str("MQTT")...)
	vh = append(vh, "MQTT"...)
	vh = append(vh, 4, 0x02, 0, 0) // level 4, clean session, keep-alive 0
	vh = append(vh, str(id)...)
	vh = append(vh, id...)
	connect := append([]byte{0x10, byte(len(vh))}, vh...)
	var sb []byte
	sb = append(sb, 0, 1) // packet id 1
	sb = append(sb, str(filter)...)
	sb = append(sb, filter...)
	sb = append(sb, qos)
	subscribe := append([]byte{0x82, byte(len(sb))}, sb...)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append(connect, subscribe...)); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 4+5) // CONNACK + SUBACK
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatalf("raw client: %v", err)
	}
	if resp[0] != 0x20 || resp[3] != 0 || resp[4] != 0x90 || resp[8] != qos {
		t.Fatalf("raw client: CONNACK/SUBACK %x", resp)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}
