package pipeline

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestCompletionLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := completionLog{every: time.Minute}
	t0 := time.Unix(1000, 0)
	lines := func() []string {
		s := strings.Split(strings.TrimSpace(buf.String()), "\n")
		buf.Reset()
		return s
	}
	l.record(log, 1, 20*time.Millisecond, 5*time.Second, t0)
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "level=INFO") || !strings.Contains(got[0], "checkpoint=1") {
		t.Fatalf("first completion: %q", got)
	}
	for i := int64(2); i <= 12; i++ { // every 5 s, 55 s in all: no summary yet
		l.record(log, i, 30*time.Millisecond, 5*time.Second, t0.Add(time.Duration(i-1)*5*time.Second))
	}
	for _, s := range lines() {
		if !strings.Contains(s, "level=DEBUG") {
			t.Fatalf("routine completion not at debug: %q", s)
		}
	}
	l.record(log, 13, 6*time.Second, 5*time.Second, t0.Add(60*time.Second))
	got := lines()
	if len(got) != 2 || !strings.Contains(got[0], "level=WARN") || !strings.Contains(got[0], "slow checkpoint") {
		t.Fatalf("slow completion: %q", got)
	}
	if !strings.Contains(got[1], "level=INFO") || !strings.Contains(got[1], "count=12") || !strings.Contains(got[1], "last=13") ||
		!strings.Contains(got[1], "max_duration=6s") {
		t.Fatalf("summary: %q", got[1])
	}
	l.record(log, 14, 30*time.Millisecond, 5*time.Second, t0.Add(65*time.Second))
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "level=DEBUG") {
		t.Fatalf("after the summary: %q", got)
	}
}
