package mqttio

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/mqtttest"
)

func TestPublisherFlushWaitsForAcks(t *testing.T) {
	b := mqtttest.Start(t)
	o := opts(t, b.URL(), "flush-pub")
	o.MaxInflight = 64
	pub := startPublisher(t, o)
	ctx := ctxT(t, 20*time.Second)
	if err := pub.Publish(ctx, "f/x", []byte("warm-up"), 1, false); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A paused broker acknowledges nothing: the window fills, Publish
	// blocks, and Flush cannot finish.
	b.Pause()
	defer b.Resume()
	n := 0
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	for ; n < 1000; n++ {
		if err := pub.Publish(short, "f/x", payload(n), 1, false); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Publish into a full window: %v", err)
			}
			break
		}
	}
	cancel()
	if n >= 1000 || n < o.MaxInflight {
		t.Fatalf("published %d messages into a window of %d with the broker paused", n, o.MaxInflight)
	}
	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	err := pub.Flush(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with the broker paused: %v", err)
	}
	if st := pub.Stats(); st.Outstanding == 0 {
		t.Fatalf("stats %+v: nothing outstanding", st)
	}
	b.Resume()
	if err := pub.Flush(ctx); err != nil {
		t.Fatalf("Flush after resume: %v", err)
	}
	if st := pub.Stats(); st.Outstanding != 0 || st.Failed != 0 || st.Acked != st.Published {
		t.Fatalf("stats %+v", st)
	}
}

// TestPublisherFlushAfterConnectionLoss: messages outstanding when the
// broker dies are reported as unconfirmed, never as acknowledged, even
// though paho resends them and completes their tokens after reconnecting.
func TestPublisherFlushAfterConnectionLoss(t *testing.T) {
	for _, clean := range []bool{true, false} {
		name := "clean"
		if !clean {
			name = "persistent"
		}
		t.Run(name, func(t *testing.T) {
			b := mqtttest.Start(t)
			o := opts(t, b.URL(), "lost-pub")
			o.CleanSession = clean
			pub := startPublisher(t, o)
			ctx := ctxT(t, 30*time.Second)
			if err := pub.Publish(ctx, "l/x", []byte("first"), 1, false); err != nil {
				t.Fatal(err)
			}
			if err := pub.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			b.Pause()
			for i := 0; i < 50; i++ {
				if err := pub.Publish(ctx, "l/x", payload(i), 1, false); err != nil {
					t.Fatal(err)
				}
			}
			b.Stop() // kill -9 while paused: none of the 50 was acknowledged
			b.Restart()
			err := pub.Flush(ctx)
			if !errors.Is(err, ErrUnconfirmed) {
				t.Fatalf("Flush after the broker died: %v, want ErrUnconfirmed", err)
			}
			t.Logf("Flush: %v", err)
			// The next round works again, and its errors are not repeated.
			if err := pub.Publish(ctx, "l/x", []byte("after"), 1, false); err != nil {
				t.Fatal(err)
			}
			if err := pub.Flush(ctx); err != nil {
				t.Fatalf("Flush after recovery: %v", err)
			}
			if st := pub.Stats(); st.Failed != 50 || st.Lost < 1 {
				t.Fatalf("stats %+v, want 50 failed", st)
			}
		})
	}
}

func TestPublishWaitsForConnection(t *testing.T) {
	b := mqtttest.Start(t)
	b.Stop()
	pub := startPublisher(t, opts(t, b.URL(), "wait-pub"))
	short, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	err := pub.Publish(short, "w/x", []byte("x"), 1, false)
	cancel()
	if !errors.Is(err, ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish with the broker down: %v", err)
	}
	b.Restart()
	ctx := ctxT(t, 10*time.Second)
	if err := pub.Publish(ctx, "w/x", []byte("x"), 1, false); err != nil {
		t.Fatalf("Publish after the broker came up: %v", err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPublisherClose(t *testing.T) {
	b := mqtttest.Start(t)
	pub := NewPublisher(opts(t, b.URL(), "close-pub"))
	ctx := ctxT(t, 10*time.Second)
	if err := pub.Publish(ctx, "c/x", []byte("x"), 2, false); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "c/x", []byte("x"), 1, false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatalf("Flush after Close with nothing outstanding: %v", err)
	}
}

func TestPublisherFileStore(t *testing.T) {
	b := mqtttest.Start(t)
	o := opts(t, b.URL(), "store-pub")
	o.CleanSession = false
	o.StoreDir = t.TempDir()
	pub := startPublisher(t, o)
	ctx := ctxT(t, 10*time.Second)
	for i := 0; i < 100; i++ {
		if err := pub.Publish(ctx, "s/x", payload(i), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPublisherConcurrent(t *testing.T) {
	b := mqtttest.Start(t)
	o := opts(t, b.URL(), "conc-pub")
	o.MaxInflight = 16
	pub := startPublisher(t, o)
	ctx := ctxT(t, 30*time.Second)
	const workers, each = 4, 500
	errs := make(chan error, workers+1)
	for w := 0; w < workers; w++ {
		go func() {
			for i := 0; i < each; i++ {
				if err := pub.Publish(ctx, "conc/x", payload(i), byte(i%3), false); err != nil {
					errs <- err
					return
				}
				if i%100 == 0 {
					if err := pub.Flush(ctx); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := pub.Stats(); st.Acked != workers*each || st.Outstanding != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}
