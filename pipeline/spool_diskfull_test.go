package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/clock"
	"github.com/eddy-stream/eddy/test/diskfull"
	"github.com/eddy-stream/eddy/test/oracle"
)

// logLines is a JSON log destination the test reads back.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// with returns the records whose msg is msg.
func (l *logLines) with(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestSpoolBacksOffOnRealFullDisk puts the spool of sink "out" on a real
// 8 MiB tmpfs filled to zero free by a hog, with the release clock fake:
// appending a completed checkpoint's output fails for lack of space, and
// the spool loop does not spin — after each failure it waits on the clock
// for 100 ms, 200 ms, 400 ms, 800 ms (the logged retry_in) and tries again
// only when that much has passed. Checkpoints go on meanwhile. When the
// hog is removed the next try succeeds and the sink gets every window
// exactly.
func TestSpoolBacksOffOnRealFullDisk(t *testing.T) {
	fsDir := diskfull.Tmpfs(t, 8<<20)
	h := newHarness(t, true)
	rs := genReadings(2000, 5, 2)
	end := endMarker(rs[len(rs)-1].ts + 3_600_000)
	h.appendReadings(append(rs, end))
	want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
	spec := h.withSpools(h.spec(1, WindowSpec{Type: "tumbling", Size: 5 * time.Second}), nil)
	spec.Sinks[0].Spool.Dir = filepath.Join(fsDir, "spool", "out")
	fc := clock.NewFakeClock(time.Now())
	spec.Clock = fc
	var logs logLines
	job, err := NewJob(spec, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hog := diskfull.FillHog(t, fsDir) // the spool is open, its disk full
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- job.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := job.Close(); err != nil {
			t.Error(err)
		}
	}()

	const failed = "spooling staged output failed, retrying"
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within a minute; sinks %+v", what, job.SinkStates())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	backoffs := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	for i, b := range backoffs {
		wait("spool failure "+b.String(), func() bool { return len(logs.with(failed)) == i+1 && fc.Waiters() > 0 })
		l := logs.with(failed)[i]
		if l["retry_in"] != float64(b) || l["sink"] != "out" || !strings.Contains(l["err"].(string), "no space left on device") &&
			!strings.Contains(l["err"].(string), "not taking records") {
			t.Fatalf("failure %d: %v; want retry_in %s for sink out, no space", i+1, l, b)
		}
		cps := h.newestCompleted()
		fc.Advance(b - time.Millisecond)
		wait("a checkpoint while the spool waits", func() bool { return h.newestCompleted() > cps })
		if n := len(logs.with(failed)); n != i+1 {
			t.Fatalf("%d spool failures %v into a %v backoff, want %d", n, b-time.Millisecond, b, i+1)
		}
		fc.Advance(time.Millisecond)
	}
	hog.Release()
	wait("every window in the sink", func() bool {
		if fc.Waiters() > 0 {
			fc.Advance(5 * time.Second) // the backoff in force, whatever it is
		}
		return len(finals(t, h.out.snapshot())) >= len(want)
	})
	compare(t, finals(t, h.out.snapshot()), want)
	t.Logf("%d spool failures on the full disk", len(logs.with(failed)))
}
