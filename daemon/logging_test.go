package daemon

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"
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
