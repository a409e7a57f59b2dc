package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// NewLogger returns eddy's process logger writing to w (stderr) in format
// "json" or "text" at the level held by level. Durations are written in
// human units ("1.5s", "18ms"), never as integer nanoseconds.
//
// Under systemd, when w is the journal stream (JOURNAL_STREAM names its
// device and inode), every line starts with the sd-daemon priority prefix
// ("<3>" error … "<7>" debug) so journalctl -p and the colours work, and
// the time is left out: the journal stamps every line itself.
func NewLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	journal := false
	if f, ok := w.(*os.File); ok {
		journal = IsJournalStream(f)
	}
	o := &slog.HandlerOptions{Level: level, ReplaceAttr: humanDurations}
	if journal {
		o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return humanDurations(groups, a)
		}
		return slog.New(newJournalHandler(w, format, o))
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

// humanDurations is a slog ReplaceAttr that writes time.Duration values as
// strings in human units, rounded to what a reader uses: "1.235s", "18ms",
// "250µs".
func humanDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	return slog.String(a.Key, FormatDuration(a.Value.Duration()))
}

// FormatDuration is d rounded to a millisecond from one second up and to a
// microsecond from one millisecond up, as time.Duration.String writes it.
func FormatDuration(d time.Duration) string {
	switch a := d.Abs(); {
	case a >= time.Second:
		d = d.Round(time.Millisecond)
	case a >= time.Millisecond:
		d = d.Round(time.Microsecond)
	}
	return d.String()
}

// IsJournalStream reports whether f is the stream systemd connected to the
// journal (JOURNAL_STREAM=<device>:<inode>), where a line may start with
// its sd-daemon(3) priority ("<3>").
func IsJournalStream(f *os.File) bool {
	js := os.Getenv("JOURNAL_STREAM")
	if js == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return js == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// journalHandler prefixes each record with its syslog priority.
type journalHandler struct {
	mu  *sync.Mutex
	w   io.Writer
	buf *bytes.Buffer
	h   slog.Handler // writes into buf
}

func newJournalHandler(w io.Writer, format string, o *slog.HandlerOptions) *journalHandler {
	buf := new(bytes.Buffer)
	var h slog.Handler = slog.NewJSONHandler(buf, o)
	if format == "text" {
		h = slog.NewTextHandler(buf, o)
	}
	return &journalHandler{mu: new(sync.Mutex), w: w, buf: buf, h: h}
}

func (j *journalHandler) Enabled(ctx context.Context, l slog.Level) bool { return j.h.Enabled(ctx, l) }

func (j *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf.Reset()
	j.buf.WriteString(priority(r.Level))
	if err := j.h.Handle(ctx, r); err != nil {
		return err
	}
	_, err := j.w.Write(j.buf.Bytes())
	return err
}

func (j *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{mu: j.mu, w: j.w, buf: j.buf, h: j.h.WithAttrs(as)}
}

func (j *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{mu: j.mu, w: j.w, buf: j.buf, h: j.h.WithGroup(name)}
}

// priority is the sd-daemon(3) prefix of a level.
func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}
