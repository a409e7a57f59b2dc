// Package clock is the box's clock as eddy reads it: Clock (wall and
// monotonic readings, injectable), BoxClock (ingestion time that never
// goes back, even when NTP steps the wall clock back) and FakeClock for
// tests.
package clock

import (
	"sync"
	"time"
)

// Clock is the box's clock, injected so tests can step and advance it.
type Clock interface {
	// Wall is the wall clock as the system has it: NTP may step it either way.
	Wall() time.Time
	// Mono is monotonic time since an arbitrary origin: it never steps.
	Mono() time.Duration
	// After delivers once d of monotonic time has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the machine's clock.
func SystemClock() Clock { return systemClock{origin: time.Now()} }

type systemClock struct{ origin time.Time }

func (systemClock) Wall() time.Time                        { return time.Now().Round(0) } // Round(0): wall reading only
func (c systemClock) Mono() time.Duration                  { return time.Since(c.origin) }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// BoxClock is the time eddy stamps on what it receives (ingestion time) and
// advances quiet watermarks with. It follows the wall clock forward (a box
// that boots with a wrong clock and is then set by NTP takes the step) but
// never goes back: after a step back it runs on at the monotonic rate from
// where it was, so readings stamped after an NTP step back are not older
// than the ones before and do not turn late. It is safe for concurrent use.
type BoxClock struct {
	c        Clock
	mu       sync.Mutex
	last     int64 // unix ns last returned
	lastMono time.Duration
	started  bool
}

// NewBoxClock returns a BoxClock on c (nil: SystemClock).
func NewBoxClock(c Clock) *BoxClock {
	if c == nil {
		c = SystemClock()
	}
	return &BoxClock{c: c}
}

// Clock returns the clock underneath.
func (b *BoxClock) Clock() Clock { return b.c }

// Floor makes the clock never return less than ms (unix ms): the newest
// timestamp eddy stored before a restart.
func (b *BoxClock) Floor(ms int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = max(b.last, ms*int64(time.Millisecond))
}

// NowMs returns the box's time in unix ms: non-decreasing.
func (b *BoxClock) NowMs() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	wall, mono := b.c.Wall().UnixNano(), b.c.Mono()
	t := max(wall, b.last)
	if b.started {
		t = max(wall, b.last+int64(mono-b.lastMono))
	}
	b.last, b.lastMono, b.started = t, mono, true
	return t / int64(time.Millisecond)
}

// FakeClock is a Clock for tests: Advance moves both readings, StepWall
// moves only the wall clock (an NTP step).
type FakeClock struct {
	mu      sync.Mutex
	wall    time.Time
	mono    time.Duration
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Duration
	ch chan time.Time
}

// NewFakeClock returns a FakeClock whose wall clock reads wall.
func NewFakeClock(wall time.Time) *FakeClock { return &FakeClock{wall: wall} }

// Wall implements Clock.
func (f *FakeClock) Wall() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wall
}

// Mono implements Clock.
func (f *FakeClock) Mono() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mono
}

// After implements Clock.
func (f *FakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.wall
		return ch
	}
	f.waiters = append(f.waiters, fakeWaiter{at: f.mono + d, ch: ch})
	return ch
}

// Waiters is the number of After channels not yet fired.
func (f *FakeClock) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// Advance lets d pass on both clocks and fires the timers due.
func (f *FakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mono += d
	f.wall = f.wall.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at <= f.mono {
			w.ch <- f.wall
			continue
		}
		kept = append(kept, w)
	}
	f.waiters = kept
}

// StepWall steps the wall clock by d (negative: back), as NTP does.
func (f *FakeClock) StepWall(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wall = f.wall.Add(d)
}
