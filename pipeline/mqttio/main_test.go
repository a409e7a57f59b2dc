package mqttio

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eddy-stream/eddy/test/mqtttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// broker is one kind of broker the tests run against.
type broker struct {
	name  string
	start func(t testing.TB) string // returns the URL; stopped at cleanup
}

var brokers = []broker{
	{"mosquitto", func(t testing.TB) string { return mqtttest.Start(t).URL() }},
	{"embedded", func(t testing.TB) string {
		e, err := StartEmbedded("127.0.0.1:0", testLogger(t))
		if err != nil {
			t.Fatalf("StartEmbedded: %v", err)
		}
		t.Cleanup(func() {
			if d := e.Dropped(); d != 0 {
				t.Errorf("embedded broker dropped %d messages", d)
			}
			_ = e.Close()
		})
		return e.URL()
	}},
}

// testLogger writes Warn and above to the test log (Debug with -v and
// EDDY_TEST_DEBUG=1).
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("EDDY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	w := &tWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// tWriter logs to t until the test's cleanup runs; paho's goroutines may
// still log a moment after that, to nowhere.
type tWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

// opts returns client options with short timeouts for tests.
func opts(t testing.TB, url, id string) ClientOptions {
	return ClientOptions{
		Broker: url, ClientID: id, CleanSession: true,
		KeepAlive: 10 * time.Second, ConnectTimeout: 2 * time.Second, ReconnectMaxInterval: 200 * time.Millisecond,
		Logger: testLogger(t),
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// collector gathers the messages a Source receives.
type collector struct {
	mu   sync.Mutex
	msgs []Message
	ch   chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1)} }

func (c *collector) handle(m Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

func (c *collector) snapshot() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.msgs...)
}

// waitN waits until at least n messages arrived.
func (c *collector) waitN(t testing.TB, n int, d time.Duration) []Message {
	t.Helper()
	deadline := time.After(d)
	for {
		if m := c.snapshot(); len(m) >= n {
			return m
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("received %d messages, want %d", len(c.snapshot()), n)
		}
	}
}

func startSource(t testing.TB, o ClientOptions, subs []Subscription, h Handler) *Source {
	t.Helper()
	s := NewSource(o, subs, h)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Source.Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func startPublisher(t testing.TB, o ClientOptions) *Publisher {
	t.Helper()
	p := NewPublisher(o)
	if err := p.Start(context.Background()); err != nil {
		t.Fatalf("Publisher.Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// waitConnected waits until the Source is connected and its subscription
// is in place: it publishes probes on probeTopic until one arrives.
func waitSubscribedT(t testing.TB, src *Source, url, probeTopic string) {
	t.Helper()
	if err := waitSubscribed(ctxT(t, 10*time.Second), src, url, probeTopic, 1); err != nil {
		t.Fatalf("subscription: %v", err)
	}
}

func payload(i int) []byte { return fmt.Appendf(nil, "msg-%06d", i) }
