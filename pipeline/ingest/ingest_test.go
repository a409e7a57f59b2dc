package ingest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/storage/ingestlog"
	"github.com/eddy-stream/eddy/test/mqtttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor polls cond until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBridgeAcksOnlyDurableAndRecognisesRedeliveries runs the daemon's
// kind of source (plain TCP, no paho store: the direct receive path)
// against mosquitto with a log that fsyncs only on Sync: nothing is
// acknowledged before the fsync, everything after it; messages appended
// and made durable but never acknowledged (the bridge closed first) come
// again, Dup set, after a reconnect to the persistent session, and are
// recognised and acknowledged without being appended twice.
func TestBridgeAcksOnlyDurableAndRecognisesRedeliveries(t *testing.T) {
	const n, m = 300, 60
	b := mqtttest.Start(t)
	log, err := ingestlog.Open(ingestlog.Options{Dir: filepath.Join(t.TempDir(), "log"), SegmentSize: 1 << 20, MaxSize: 8 << 20, ManualSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := mqttio.ClientOptions{Broker: b.URL(), ClientID: "bridge-test", ReconnectMaxInterval: time.Second}
	subs := []mqttio.Subscription{{Filter: "t/#", QoS: 1}}
	start := func() *Bridge {
		in := New("t", log, o, subs, nil)
		if err := in.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return in
	}
	in := start()
	defer func() { in.Close() }()
	pub := mqttio.NewPublisher(mqttio.ClientOptions{Broker: b.URL(), ClientID: "bridge-test-pub", CleanSession: true, ReconnectMaxInterval: time.Second})
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// The subscription is in place once a probe arrives; make the probes
	// durable and acknowledged before counting.
	waitFor(t, 20*time.Second, "first probe", func() bool {
		if err := pub.Publish(ctx, "t/probe", []byte("p"), 1, false); err != nil {
			t.Fatal(err)
		}
		return in.Received.Load() > 0
	})
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "probes acknowledged", func() bool {
		if err := log.Sync(); err != nil {
			t.Fatal(err)
		}
		return in.Acked.Load() == in.Received.Load() && in.Received.Load() == int64(log.NextOffset())
	})
	base := log.NextOffset()

	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if err := pub.Publish(ctx, "t/data", fmt.Appendf(nil, "m%04d", i), 1, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, n)
	waitFor(t, 20*time.Second, "all received", func() bool { return log.NextOffset() == base+n })
	if a := in.Acked.Load(); a != int64(base) {
		t.Fatalf("acked %d before the fsync, want %d", a, base)
	}
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	if a := in.Acked.Load(); a != int64(base+n) {
		t.Fatalf("acked %d after the fsync, want %d", a, base+n)
	}

	// Appended, made durable after the bridge is gone: never acknowledged.
	publish(n, n+m)
	waitFor(t, 20*time.Second, "second batch received", func() bool { return log.NextOffset() == base+n+m })
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	in = start()
	// A message published now arrives after the redeliveries (mosquitto
	// resends the session's in-flight messages first).
	waitFor(t, 20*time.Second, "reconnected", in.Connected)
	if err := pub.Publish(ctx, "t/end", []byte("end"), 1, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the last message", func() bool { return log.NextOffset() == base+n+m+1 })
	if d := in.Duplicates.Load(); d != m {
		t.Fatalf("%d redeliveries recognised, want %d (every unacknowledged message, no acknowledged one)", d, m)
	}
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	if a := in.Acked.Load(); a != m+1 {
		t.Fatalf("acked %d after the reconnect, want %d", a, m+1)
	}
	r, err := log.NewReader(base)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var rec ingestlog.Record
	for i := 0; ; i++ {
		err := r.Next(&rec)
		if errors.Is(err, ingestlog.ErrNoData) {
			if i != n+m+1 {
				t.Fatalf("read %d records, want %d", i, n+m+1)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == n+m {
			if rec.Topic != "t/end" {
				t.Fatalf("record %d: topic %s, want t/end", i, rec.Topic)
			}
			continue
		}
		if want := fmt.Sprintf("m%04d", i); string(rec.Payload) != want || rec.Topic != "t/data" || rec.QoS != 1 {
			t.Fatalf("record %d: %s %q qos %d, want t/data %q qos 1", i, rec.Topic, rec.Payload, rec.QoS, want)
		}
	}
}
