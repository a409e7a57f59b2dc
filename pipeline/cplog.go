package pipeline

import (
	"log/slog"
	"time"
)

// completionSummaryEvery is how often routine checkpoint completions are
// summarised at info level; each one is logged at debug.
const completionSummaryEvery = 5 * time.Minute

// completionLog keeps the journal readable at a short interval (17k info
// lines a day at 5 s): every completed checkpoint is logged at debug, one
// that took longer than the checkpoint interval at warn, the first one
// after a start at info, and every completionSummaryEvery an info line
// sums up the checkpoints completed since the last summary.
type completionLog struct {
	every time.Duration
	since time.Time // start of the current summary period; zero before the first completion
	n     int
	total time.Duration
	max   time.Duration
	last  int64
}

// record logs checkpoint id, completed at now after took, with attrs.
func (l *completionLog) record(log *slog.Logger, id int64, took, interval time.Duration, now time.Time, attrs ...any) {
	every := l.every
	if every <= 0 {
		every = completionSummaryEvery
	}
	attrs = append([]any{"checkpoint", id, "duration", took.Round(time.Millisecond)}, attrs...)
	switch {
	case l.since.IsZero():
		log.Info("checkpoint completed (routine completions are logged at debug, summed up at info every "+every.String()+")", attrs...)
		l.since = now
		return
	case interval > 0 && took > interval:
		log.Warn("slow checkpoint: took longer than checkpointing.interval", append(attrs, "interval", interval)...)
	default:
		log.Debug("checkpoint completed", attrs...)
	}
	l.n++
	l.total += took
	l.max = max(l.max, took)
	l.last = id
	if now.Sub(l.since) >= every {
		log.Info("checkpoints completed", "count", l.n, "last", l.last, "period", now.Sub(l.since).Round(time.Second),
			"avg_duration", (l.total / time.Duration(l.n)).Round(time.Millisecond), "max_duration", l.max.Round(time.Millisecond))
		*l = completionLog{every: l.every, since: now}
	}
}
