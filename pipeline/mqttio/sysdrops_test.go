package mqttio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/mqtttest"
)

// eddyConf is the mosquitto snippet the package installs as
// /etc/mosquitto/conf.d/eddy.conf.
const eddyConf = "../../packaging/mosquitto/eddy.conf"

// startWithEddyConf starts mosquitto with the packaged snippet included the
// way Debian's mosquitto.conf includes it (include_dir, last), after
// mosquitto's default queue limits, then extra lines. $SYS is published
// every second.
func startWithEddyConf(t *testing.T, extra ...string) *mqtttest.Broker {
	t.Helper()
	snippet, err := os.ReadFile(eddyConf)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	confd := filepath.Join(dir, "conf.d")
	if err := os.Mkdir(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(confd, "eddy.conf"), snippet, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := append([]string{
		"persistence_location " + dir + "/", // Debian's main file sets it too
		"sys_interval 1",
		// mosquitto's defaults, which mqtttest lifts: the snippet must
		// raise them again.
		"max_queued_messages 1000",
		"max_inflight_messages 20",
		"include_dir " + confd,
	}, extra...)
	return mqtttest.Start(t, mqtttest.WithConfig(lines...))
}

// TestEddyConfHoldsOutage: eddy's persistent session is away while 5000
// QoS 1 readings are published; with the packaged snippet all 5000 arrive on
// reconnect. The control run with Debian's default max_queued_messages 1000
// loses some, and the SysWatcher reads exactly the lost number from $SYS.
func TestEddyConfHoldsOutage(t *testing.T) {
	const n = 5000
	for _, tc := range []struct {
		name  string
		extra []string
		lossy bool
	}{
		{"eddy.conf", nil, false},
		{"debian_default_1000", []string{"max_queued_messages 1000"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startWithEddyConf(t, tc.extra...)
			url := b.URL()
			w := NewSysWatcher(opts(t, url, "sys-watch"), nil)
			if err := w.Start(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = w.Close() })

			so := opts(t, url, "eddy-src")
			so.CleanSession = false
			subs := []Subscription{{Filter: "readings/#", QoS: 1}}
			ack := func(col *collector) Handler {
				return func(m Message) { col.handle(m); m.Ack() }
			}
			first := newCollector()
			src := startSource(t, so, subs, ack(first))
			waitSubscribedT(t, src, url, "readings/probe")
			if err := src.Close(); err != nil { // the session stays at the broker
				t.Fatal(err)
			}

			pub := startPublisher(t, opts(t, url, "plant"))
			ctx := ctxT(t, 60*time.Second)
			for i := 0; i < n; i++ {
				if err := pub.Publish(ctx, "readings/t", payload(i), 1, false); err != nil {
					t.Fatalf("Publish %d: %v", i, err)
				}
			}
			if err := pub.Flush(ctx); err != nil {
				t.Fatal(err)
			}

			again := newCollector()
			startSource(t, so, subs, ack(again))
			got := map[string]bool{}
			deadline := time.Now().Add(30 * time.Second)
			for {
				for _, m := range again.snapshot() {
					if strings.HasPrefix(string(m.Payload), "msg-") {
						got[string(m.Payload)] = true
					}
				}
				st := w.Stats()
				if !tc.lossy && len(got) == n {
					break
				}
				if tc.lossy && st.DroppedSeen && int(st.Dropped)+len(got) == n {
					t.Logf("received %d, broker reports %d dropped", len(got), st.Dropped)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("received %d of %d distinct readings; $SYS: %+v", len(got), n, st)
				}
				select {
				case <-again.ch:
				case <-time.After(100 * time.Millisecond): // $SYS arrives on the watcher, not here
				}
			}
			st := w.Stats()
			if !strings.HasPrefix(st.Version, "mosquitto version ") {
				t.Errorf("version %q", st.Version)
			}
			if tc.lossy && len(got) == n {
				t.Fatal("control run lost nothing: the test cannot tell the snippet from the default")
			}
			if !tc.lossy && st.Dropped != 0 {
				t.Fatalf("broker reports %d dropped with eddy.conf", st.Dropped)
			}
		})
	}
}
