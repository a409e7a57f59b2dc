package upload

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// link is the uplink's state: up after any request that got an answer,
// down after one that failed. It has its own lock.
type link struct {
	remote string // for logs
	log    *slog.Logger

	mu       sync.Mutex
	up       bool
	known    bool
	since    time.Time
	lastErr  string
	failures int64
}

// set records the outcome of a request: up or not, and its error (nil:
// none). A change is logged.
func (l *link) set(up bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if up != l.up || !l.known {
		l.since = time.Now()
		if up {
			l.log.Info("remote reachable", "remote", l.remote)
		} else {
			l.log.Warn("remote unreachable; uploads wait for the link", "remote", l.remote, "err", err)
		}
	}
	l.up, l.known = up, true
	if err != nil {
		l.lastErr = err.Error()
		l.failures++
	} else if up {
		l.lastErr = ""
	}
}

// setError shows err as the last error without counting a failure of the
// link (uploads stopped for a conflict).
func (l *link) setError(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr = err.Error()
}

type linkStats struct {
	up, known bool
	since     time.Time
	lastErr   string
	failures  int64
}

func (l *link) stats() linkStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return linkStats{up: l.up, known: l.known, since: l.since, lastErr: l.lastErr, failures: l.failures}
}

// backoff is the wait after a failure: it starts at first and doubles up
// to max; each wait is jittered between half and all of it.
type backoff struct {
	first, max, cur time.Duration
}

func newBackoff(first, max time.Duration) backoff { return backoff{first: first, max: max, cur: first} }

func (b *backoff) reset() { b.cur = b.first }

// next returns the wait to sleep now and doubles the next one.
func (b *backoff) next() time.Duration {
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(b.cur*2, b.max)
	return d
}

// sleep waits d or until ctx is done; it returns false in the latter case.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// waitLink sleeps after a failure for the next backoff. With Probe it then
// tests the link with one Stat and keeps waiting while that fails. It is
// woken only by time or ctx, never by new checkpoints, so a dead link
// costs one cheap request per backoff period. It returns false when ctx
// is done.
func (u *Uploader) waitLink(ctx context.Context, b *backoff) bool {
	for {
		if !sleep(ctx, b.next()) {
			return false
		}
		if !u.o.Probe {
			return true
		}
		pctx, cancel := context.WithTimeout(ctx, min(u.o.OpTimeout, 30*time.Second))
		_, err := u.o.Store.Stat(pctx, u.layout.Key("_probe"))
		cancel()
		if err == nil || errors.Is(err, ErrNotFound) {
			u.link.set(true, nil)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		u.link.set(false, err)
	}
}
