package daemon

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestJournalHandler(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(slog.LevelDebug)
	o := &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	log := slog.New(newJournalHandler(&buf, "text", o)).With("component", "test")
	log.Debug("d")
	log.Info("i", "k", 1)
	log.Warn("w")
	log.Error("e")
	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"<7>level=DEBUG msg=d component=test", "<6>level=INFO msg=i component=test k=1",
		"<4>level=WARN msg=w component=test", "<3>level=ERROR msg=e component=test"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("journal lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNewLoggerOutsideJournal(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "1:2")
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	NewLogger(f, "json", new(slog.LevelVar)).Info("hello")
	b, _ := os.ReadFile(f.Name())
	if !strings.HasPrefix(string(b), `{"time":`) {
		t.Fatalf("not a plain JSON line with time: %q", b)
	}
}

func TestDurationsInHumanUnits(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		f, err := os.CreateTemp(t.TempDir(), "log")
		if err != nil {
			t.Fatal(err)
		}
		NewLogger(f, format, new(slog.LevelVar)).With("age", 20*time.Second).
			Info("checkpoint completed", "duration", 18*time.Millisecond, slog.Group("sync", "took", 1234567891*time.Nanosecond))
		f.Close()
		b, _ := os.ReadFile(f.Name())
		line := string(b)
		for _, want := range []string{"18ms", "20s", "1.235s"} {
			if !strings.Contains(line, want) {
				t.Errorf("%s: %q lacks %s", format, line, want)
			}
		}
		if strings.Contains(line, "18000000") || strings.Contains(line, "20000000000") {
			t.Errorf("%s: integer nanoseconds in %q", format, line)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 999 * time.Nanosecond: "999ns", 1500 * time.Microsecond: "1.5ms",
		18*time.Millisecond + 123*time.Nanosecond: "18ms", 1500 * time.Millisecond: "1.5s",
		90*time.Minute + 1234*time.Microsecond: "1h30m0.001s", -2 * time.Second: "-2s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%d) = %s, want %s", d, got, want)
		}
	}
}

func TestLogCatchWatchdogAbort(t *testing.T) {
	var logBuf, dump bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	exited := make(chan int, 1)
	release := CatchWatchdogAbort(log, &dump, func(code int) { exited <- code })
	defer release()
	if err := syscall.Kill(os.Getpid(), syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	if code := <-exited; code != ExitWatchdogAbort {
		t.Errorf("exit code %d, want %d", code, ExitWatchdogAbort)
	}
	if !strings.Contains(logBuf.String(), "level=ERROR") || !strings.Contains(logBuf.String(), "watchdog") {
		t.Errorf("log: %q", logBuf.String())
	}
	if !strings.Contains(dump.String(), "goroutine ") || !strings.Contains(dump.String(), "TestLogCatchWatchdogAbort") {
		t.Errorf("no goroutine dump: %q", dump.String())
	}
}

func TestGoroutineDumpJournalPriority(t *testing.T) {
	var out bytes.Buffer
	writeGoroutineDump(&out, true)
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		if !strings.HasPrefix(l, "<7>") {
			t.Fatalf("dump line without the debug priority: %q", l)
		}
	}
}
