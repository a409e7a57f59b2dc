package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/notifytest"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// These tests run the daemon in the test process with NOTIFY_SOCKET set to
// a unixgram socket the test reads, as systemd does.

func statusHas(subs ...string) func(notifytest.Msg) bool {
	return func(m notifytest.Msg) bool {
		st, ok := m.Fields["STATUS"]
		if !ok {
			return false
		}
		for _, s := range subs {
			if neg, ok := strings.CutPrefix(s, "!"); ok {
				if strings.Contains(st, neg) {
					return false
				}
			} else if !strings.Contains(st, s) {
				return false
			}
		}
		return true
	}
}

// A source losing its broker, and getting it back, changes STATUS= at once:
// the periodic refresh is an hour here, so only the change can send it.
func TestStatusFollowsMQTTConnection(t *testing.T) {
	b, err := mqttio.StartEmbedded("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addr := b.Addr()
	ns := notifytest.Listen(t)
	t.Setenv("NOTIFY_SOCKET", ns.Path())
	d, err := New(inProcessConfigBroker(t, t.TempDir(), b.URL()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.notify.every = time.Hour
	done := startRun(t, d)

	ns.WaitFor(0, 10*time.Second, "READY=1", notifytest.IsKey("READY", "1"))
	_, i := ns.WaitFor(0, 20*time.Second, "STATUS= of a connected source",
		statusHas("no checkpoint yet", "backlog 0", "rec/s", "!MQTT"))

	// The broker goes away.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	m, i := ns.WaitFor(i+1, 20*time.Second, "STATUS=MQTT disconnected …", statusHas("MQTT disconnected"))
	if st := m.Fields["STATUS"]; !strings.HasPrefix(st, "MQTT disconnected · no checkpoint yet · backlog 0 · ") {
		t.Errorf("STATUS=%q, want the disconnection first, then checkpoint and backlog", st)
	}

	// It comes back on the same address; paho reconnects.
	b2, err := mqttio.StartEmbedded(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	ns.WaitFor(i+1, 60*time.Second, "STATUS= without MQTT disconnected after the broker is back",
		statusHas("no checkpoint yet", "!MQTT"))

	mark := ns.Count()
	d.Stop()
	ns.WaitFor(mark, 10*time.Second, "STOPPING=1", notifytest.IsKey("STOPPING", "1"))
	if err := runResult(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// Right after READY the line names the restored checkpoint and the real
// backlog: messages the restored position has not read, not the retained
// log. The first start has truly no checkpoint.
func TestStatusAtReadyAfterRestore(t *testing.T) {
	ns := notifytest.Listen(t)
	t.Setenv("NOTIFY_SOCKET", ns.Path())
	dir := t.TempDir()

	// First run: 1500 messages are read and covered by the final checkpoint.
	d1, err := New(inProcessConfig(t, dir), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d1.Close()
	const n = 1500
	l := d1.logs["readings"]
	for i := range n {
		if _, err := l.Append(&ingestlog.Record{Timestamp: time.Now().UnixMilli(), Topic: "sensors/a/b/telemetry",
			Payload: fmt.Appendf(nil, `{"temperature": %d}`, i%100)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	done := startRun(t, d1)
	ready, _ := ns.WaitFor(0, 10*time.Second, "READY=1", notifytest.IsKey("READY", "1"))
	// (The source may still be connecting: the line may begin with "MQTT
	// disconnected · ".)
	if st := ready.Fields["STATUS"]; !strings.Contains(st, "no checkpoint yet · backlog ") {
		t.Errorf("first READY: STATUS=%q, want no checkpoint yet and the backlog", st)
	}
	eventually(t, 2*time.Minute, "all messages read", func() bool {
		o := d1.overview()
		return len(o.Ingest) == 1 && o.Ingest[0].ReadOffset == n && o.Ingest[0].Lag == 0
	})
	d1.Stop()
	if err := runResult(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}

	// Second run: READY says which checkpoint was restored, and backlog 0
	// although the log still holds the messages.
	mark := ns.Count()
	d2, err := New(inProcessConfig(t, dir), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	md, _, err := d2.store.Latest(false)
	if err != nil || md == nil {
		t.Fatalf("no checkpoint after the final checkpoint: %v", err)
	}
	if next := d2.logs["readings"].NextOffset(); next != n {
		t.Fatalf("ingest log ends at %d, want %d", next, n)
	}
	done = startRun(t, d2)
	ready, _ = ns.WaitFor(mark, 10*time.Second, "READY=1 after restart", notifytest.IsKey("READY", "1"))
	want := fmt.Sprintf("restored checkpoint %d (", md.ID)
	if st := ready.Fields["STATUS"]; !strings.Contains(st, want) || !strings.Contains(st, " · backlog 0 · ") {
		t.Errorf("READY after restore: STATUS=%q, want %q… · backlog 0", st, want)
	}
	o := d2.overview()
	if o.Ingest[0].Lag != 0 || o.Ingest[0].ReadOffset != n {
		t.Errorf("overview after restore: %+v, want read offset %d and lag 0", o.Ingest[0], n)
	}
	d2.Stop()
	if err := runResult(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// An ingest log that fills changes STATUS= at once ("intake paused"), and
// so does the checkpoint that frees it.
func TestStatusFollowsFullIngestLog(t *testing.T) {
	ns := notifytest.Listen(t)
	t.Setenv("NOTIFY_SOCKET", ns.Path())
	d, err := New(inProcessConfig(t, t.TempDir(), "ingest_log:\n  segment_size: 64KiB\n  max_size: 128KiB\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.notify.every = time.Hour
	done := startRun(t, d)
	_, i := ns.WaitFor(0, 20*time.Second, "STATUS= of a connected source", statusHas("no checkpoint yet", "!MQTT"))

	// 160 messages of 1 KiB: more than the log's 128 KiB.
	pub := mqttio.NewPublisher(mqttio.ClientOptions{Broker: d.brokerURL, ClientID: "status-test-pub"})
	defer pub.Close()
	ctx := t.Context()
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	payload := fmt.Appendf(nil, `{"temperature": 20, "pad": %q}`, strings.Repeat("x", 1000))
	for range 160 {
		if err := pub.Publish(ctx, "sensors/a/b/telemetry", payload, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	m, i := ns.WaitFor(i+1, 20*time.Second, "STATUS=ingest log full …", statusHas("ingest log full, intake paused"))
	if st := m.Fields["STATUS"]; !strings.HasPrefix(st, "ingest log full, intake paused · no checkpoint yet · backlog ") {
		t.Errorf("STATUS=%q, want the full log first", st)
	}

	// A checkpoint lets the log drop what it covers; intake resumes.
	id, err := d.currentJob().TriggerCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ns.WaitFor(i+1, 20*time.Second, "STATUS= without the full log after a checkpoint",
		statusHas(fmt.Sprintf("checkpoint %d ", id), "!full"))

	if err := pub.Close(); err != nil { // before the broker goes
		t.Fatal(err)
	}
	d.Stop()
	if err := runResult(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// eventually polls cond until it holds, failing the test after timeout (a
// bound for a hung run, not a measure of speed).
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
