package ingestlog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

var (
	// ErrFull is wrapped by Append when Size() >= MaxSize.
	ErrFull = errors.New("ingestlog: log full")
	// ErrNoData is returned by Reader.Next when it has read every durable record.
	ErrNoData = errors.New("ingestlog: no durable data")
	// ErrOffsetTruncated is wrapped when an offset was removed by TruncateFront.
	ErrOffsetTruncated = errors.New("ingestlog: offset truncated")
	// ErrOffsetOutOfRange is wrapped by NewReader for an offset beyond the end.
	ErrOffsetOutOfRange = errors.New("ingestlog: offset beyond end of log")
	// ErrClosed is returned by calls on a closed Log, or a Reader of one.
	ErrClosed = errors.New("ingestlog: closed")
	// ErrUnavailable is wrapped by Append while intake is paused (Pause)
	// or while the log recovers from a failed write or fsync. Nothing was
	// appended; try again later.
	ErrUnavailable = errors.New("ingestlog: not taking records")
)

// Reasons Paused reports besides those given to Pause.
const (
	PauseFull  = "ingest_log_full"  // Size() >= MaxSize
	PauseError = "ingest_log_error" // a write or fsync failed; recovery is retried
)

// Options configure a Log.
type Options struct {
	Dir         string // the log's directory, one per MQTT source
	SegmentSize int64  // a record that would take the active segment past this starts a new one
	MaxSize     int64  // Append fails with ErrFull once Size() >= MaxSize; at least 2 × SegmentSize
	// SyncInterval is the group commit: a goroutine fsyncs at most this
	// often while there are unsynced records. 0: every Append fsyncs
	// before it returns (concurrent appends still share an fsync).
	SyncInterval time.Duration
	// ManualSync turns automatic fsyncs off: only Sync (and Close) fsync,
	// and only Sync retries a failed write or fsync. For tests and tools.
	ManualSync bool
	// RetryInterval is how often a log whose write or fsync failed tries
	// to recover (see Sync); 0: DefaultRetryInterval.
	RetryInterval time.Duration
	Logger        *slog.Logger // nil: discard
	FS            fileutil.FS  // nil: fileutil.OSFS{Logger: Logger}
}

// DefaultRetryInterval is the default Options.RetryInterval.
const DefaultRetryInterval = 100 * time.Millisecond

// DefaultOptions returns the default options for a log in dir.
func DefaultOptions(dir string) Options {
	return Options{Dir: dir, SegmentSize: 64 << 20, MaxSize: 1 << 30, SyncInterval: 2 * time.Millisecond}
}

// Validate reports every invalid option at once.
func (o Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("ingestlog: Dir is empty"))
	}
	if o.SegmentSize <= 0 {
		errs = append(errs, fmt.Errorf("ingestlog: SegmentSize %d, want > 0", o.SegmentSize))
	}
	if o.MaxSize < 2*o.SegmentSize {
		errs = append(errs, fmt.Errorf("ingestlog: MaxSize %d, want at least twice SegmentSize %d so that TruncateFront can free space", o.MaxSize, o.SegmentSize))
	}
	if o.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("ingestlog: SyncInterval %v, want >= 0", o.SyncInterval))
	}
	if o.RetryInterval < 0 {
		errs = append(errs, fmt.Errorf("ingestlog: RetryInterval %v, want >= 0", o.RetryInterval))
	}
	return errors.Join(errs...)
}

const (
	segSuffix = ".seg"
	flushSize = 256 << 10 // Append writes its buffer to the file once it holds this much
)

type segment struct {
	base uint64 // offset of its first record: its name
	size int64  // bytes, including those still buffered
}

// position is a point in the log at a record boundary.
type position struct {
	seg  uint64 // base of the segment
	size int64  // bytes of that segment before the point
	next uint64 // offset of the record after the point
}

// Log is an append-only, segmented log of received messages. See the
// package documentation for its invariants. All methods are safe for
// concurrent use.
type Log struct {
	opts Options
	fs   fileutil.FS
	log  *slog.Logger

	mu   sync.Mutex
	segs []segment // by base; the last is active
	f    fileutil.File
	// tail holds the frames of every record not yet durable, offsets
	// durable.next … next-1, in order; the bytes of it before written are
	// in the segment files. After a failed write or fsync, recovery
	// rewrites them from here, so an accepted record is never lost to an
	// I/O error.
	tail     tail
	written  int64 // stream offset (see tail) up to which bytes were written
	next     uint64
	size     int64
	durable  position
	synced   atomic.Uint64 // durable.next, for SyncedOffset without l.mu
	notify   chan struct{} // closed and replaced when durable advances
	onSync   []func(uint64)
	sealed   []fileutil.File // fsynced by roll, closed by the next sync
	dirDirty bool            // a segment was created since the last directory fsync
	broken   error           // a write or fsync failed: recover before the next write
	breaks   int             // failures so far: a sync round that saw one is void
	err      error           // sticky: corruption found while recovering
	paused   map[string]bool // reasons given to Pause
	closed   bool

	syncMu  sync.Mutex    // one fsync round (or recovery) at a time
	truncMu sync.Mutex    // one TruncateFront at a time
	kick    chan struct{} // Append wakes the background goroutine
	quit    chan struct{}
	done    chan struct{}
}

// Open opens the log in o.Dir, creating it if needed. It removes *.tmp
// leftovers, checks that every segment but the last begins with the record
// its name promises, and scans the last segment: a torn tail is truncated
// (and logged), any other damage returns a *fileutil.CorruptionError. What Open
// finds is made durable, so SyncedOffset() == NextOffset() on return.
func Open(o Options) (*Log, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	l := &Log{opts: o, fs: o.FS, log: o.Logger, notify: make(chan struct{}), paused: map[string]bool{}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.fs == nil {
		l.fs = fileutil.OSFS{Logger: l.log}
	}
	if err := l.open(); err != nil {
		if l.f != nil {
			err = errors.Join(err, l.f.Close())
		}
		if _, ok := errors.AsType[*fileutil.CorruptionError](err); ok {
			return nil, err // names the file already
		}
		return nil, fmt.Errorf("ingestlog: open %s: %w", o.Dir, err)
	}
	if !o.ManualSync {
		l.kick, l.quit, l.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go l.background(o.SyncInterval)
	}
	return l, nil
}

func (l *Log) open() error {
	if err := fileutil.CreateDirAllFS(l.fs, l.opts.Dir); err != nil {
		return err
	}
	removed, err := fileutil.RemoveTmpFS(l.fs, l.opts.Dir)
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		l.log.Info("removed leftover temporary files", "paths", removed)
	}
	if l.segs, err = l.listSegments(); err != nil {
		return err
	}
	if len(l.segs) == 0 {
		l.segs = []segment{{base: 0}}
		l.f, err = l.createSegment(0)
	} else {
		for i := range l.segs[:len(l.segs)-1] {
			if err := l.checkSealed(&l.segs[i]); err != nil {
				return err
			}
		}
		err = l.recoverActive()
	}
	if err == nil {
		err = l.f.Sync()
	}
	if err == nil {
		err = l.fs.SyncDir(l.opts.Dir)
	}
	l.durable = position{seg: l.active().base, size: l.active().size, next: l.next}
	l.synced.Store(l.next)
	return err
}

func (l *Log) listSegments() ([]segment, error) {
	entries, err := l.fs.ReadDir(l.opts.Dir)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil || filepath.Base(l.segPath(base)) != name {
			return nil, fmt.Errorf("unexpected segment name %s", name)
		}
		segs = append(segs, segment{base: base})
	}
	slices.SortFunc(segs, func(a, b segment) int { return bySegBase(a, b.base) })
	return segs, nil
}

// checkSealed sizes a segment that is not the last and checks that it
// begins with a record carrying its base offset.
func (l *Log) checkSealed(seg *segment) (err error) {
	f, err := l.fs.OpenFile(l.segPath(seg.base), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	seg.size = fi.Size()
	l.size += seg.size
	s := segReader{f: f, path: l.segPath(seg.base), next: seg.base, buf: make([]byte, 4096)}
	if err := s.read(new(Record), seg.size); err != io.EOF {
		return err
	}
	return s.corrupt(errors.New("segment is empty but not the last"))
}

// recoverActive opens the last segment for appending after scanning it.
// A damaged record with no intact record after it is a torn write and is
// cut off; with an intact record after it, it is corruption.
func (l *Log) recoverActive() (err error) {
	seg := l.active()
	path := l.segPath(seg.base)
	if l.f, err = l.fs.OpenFile(path, os.O_RDWR|os.O_APPEND, 0); err != nil {
		return err
	}
	fi, err := l.f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	s := segReader{f: l.f, path: path, next: seg.base, buf: make([]byte, readBufSize)}
	var rec Record
	for err == nil {
		err = s.read(&rec, size)
	}
	var ce *fileutil.CorruptionError
	switch {
	case err == io.EOF:
	case !errors.As(err, &ce) || !torn(ce.Err):
		return err
	default:
		at, err := nextFrame(l.f, ce.Offset, size, s.next)
		if err != nil {
			return err
		}
		if at >= 0 {
			ce.Err = fmt.Errorf("%w; an intact record follows at byte %d", ce.Err, at)
			return ce
		}
		l.log.Warn("truncating torn tail of ingest log", "path", path, "at", ce.Offset, "bytes", size-ce.Offset, "reason", ce.Err, "next_offset", s.next)
		if err := l.f.Truncate(ce.Offset); err != nil {
			return err
		}
	}
	seg.size, l.next = s.pos(), s.next
	l.size += seg.size
	return nil
}

// torn reports whether err is damage a torn write leaves behind.
func torn(err error) bool {
	return errors.Is(err, errIncomplete) || errors.Is(err, errChecksum) || errors.Is(err, errLength)
}

// nextFrame returns the file offset of the first intact frame after byte
// at carrying an offset >= want, or -1. It reads the rest of the file.
func nextFrame(f fileutil.File, at, size int64, want uint64) (int64, error) {
	tail := make([]byte, size-at)
	if _, err := f.ReadAt(tail, at); err != nil {
		return 0, err
	}
	var rec Record
	for i := 1; i+headerSize <= len(tail); i++ {
		if _, err := decodeFrame(tail[i:], &rec, nil); err == nil && rec.Offset >= want {
			return at + int64(i), nil
		}
	}
	return -1, nil
}

func (l *Log) segPath(base uint64) string {
	return filepath.Join(l.opts.Dir, SegmentName(base))
}

func (l *Log) createSegment(base uint64) (fileutil.File, error) {
	return l.fs.OpenFile(l.segPath(base), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
}

func (l *Log) active() *segment { return &l.segs[len(l.segs)-1] }

// fail makes err the log's sticky error unless it has one; l.mu is held.
func (l *Log) fail(err error) error {
	if l.err == nil {
		l.err = err
		l.log.Error("ingest log broken, appends fail until restart", "dir", l.opts.Dir, "err", err)
	}
	return l.err
}

// breakLocked records a failed write or fsync; l.mu is held. The records
// not yet durable stay in l.tail, and Append refuses new ones until a
// Sync has recovered (recoverLocked).
func (l *Log) breakLocked(err error) error {
	if l.broken == nil {
		l.log.Warn("ingest log write or fsync failed: not taking records; the ones not yet durable are kept and rewritten once the file system recovers",
			"dir", l.opts.Dir, "err", err, "synced_offset", l.durable.next, "unsynced_records", l.next-l.durable.next)
	}
	l.broken = err
	l.breaks++
	return err
}

// Append appends r, setting r.Offset, and returns its offset. With
// SyncInterval > 0 (or ManualSync) the record is buffered: it is durable,
// and visible to Readers, once SyncedOffset() exceeds its offset. With
// SyncInterval 0 Append fsyncs before it returns.
//
// A record Append accepted is never lost to a failed write or fsync: the
// log keeps it in memory until it is durable. Append returns an error
// wrapping ErrFull while Size() >= MaxSize, one wrapping ErrUnavailable
// while intake is paused or the log recovers from a failed write or
// fsync (nothing is appended then), and the log's sticky error once it
// found corruption.
func (l *Log) Append(r *Record) (uint64, error) {
	if err := checkRecord(r); err != nil {
		return 0, err
	}
	l.mu.Lock()
	if err := l.writable(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	l.write(r)
	l.mu.Unlock()
	l.afterAppend()
	return r.Offset, nil
}

// AppendBatch appends every record of rs like Append and returns the
// offset of the last one (0 for an empty batch). Either all records are
// appended or none.
func (l *Log) AppendBatch(rs []Record) (last uint64, err error) {
	for i := range rs {
		if err := checkRecord(&rs[i]); err != nil {
			return 0, err
		}
	}
	if len(rs) == 0 {
		return 0, nil
	}
	l.mu.Lock()
	if err := l.writable(); err != nil {
		l.mu.Unlock()
		return 0, err
	}
	for i := range rs {
		l.write(&rs[i])
	}
	l.mu.Unlock()
	l.afterAppend()
	return rs[len(rs)-1].Offset, nil
}

// afterAppend fsyncs (SyncInterval 0) or wakes the group commit. A failed
// fsync is not the caller's: the record is kept and recovery retried.
func (l *Log) afterAppend() {
	if l.opts.SyncInterval == 0 && !l.opts.ManualSync {
		_ = l.Sync()
		return
	}
	l.kickSync()
}

func (l *Log) writable() error {
	switch {
	case l.closed:
		return ErrClosed
	case l.err != nil:
		return l.err
	case l.broken != nil:
		return fmt.Errorf("%w: %s recovers from: %v", ErrUnavailable, l.opts.Dir, l.broken)
	case len(l.paused) > 0:
		return fmt.Errorf("%w: %s paused (%s)", ErrUnavailable, l.opts.Dir, strings.Join(slices.Sorted(maps.Keys(l.paused)), ", "))
	case l.size >= l.opts.MaxSize:
		return fmt.Errorf("%w: %s holds %d bytes, MaxSize %d", ErrFull, l.opts.Dir, l.size, l.opts.MaxSize)
	}
	return nil
}

// write encodes r at offset l.next and places it; l.mu is held.
func (l *Log) write(r *Record) {
	r.Offset = l.next
	start := l.tail.appendFrame(r)
	l.place(start, l.tail.end)
}

// place accounts for the frame at stream offsets [start, end) of l.tail,
// the last one placed, starting a new
// segment first if it would take the active one past SegmentSize, and
// writes the buffer once it holds flushSize bytes. While the log is
// broken it does no I/O: recovery places every unsynced frame again.
func (l *Log) place(start, end int64) {
	n := end - start
	if act := l.active(); l.broken == nil && act.size > 0 && act.size+n > l.opts.SegmentSize {
		l.roll(start)
	}
	l.active().size += n
	l.size += n
	l.next++
	if l.broken == nil && end-l.written >= flushSize {
		l.flush(end)
	}
}

// flush writes the bytes of l.tail from l.written up to n to the active
// segment.
func (l *Log) flush(n int64) error {
	if l.broken != nil {
		return l.broken
	}
	if n == l.written {
		return nil
	}
	err := l.tail.each(l.written, n, func(b []byte) error {
		_, err := l.f.Write(b)
		return err
	})
	if err != nil {
		return l.breakLocked(fmt.Errorf("ingestlog: write: %w", err))
	}
	l.written = n
	return nil
}

// roll writes the unsynced bytes before the frame at start, fsyncs the
// active segment and starts a new one at l.next. So every segment but the
// last is complete and durable; the new segment's directory entry is
// fsynced by the next sync, before any of its records counts as durable.
func (l *Log) roll(start int64) {
	if l.flush(start) != nil {
		return
	}
	if err := l.f.Sync(); err != nil {
		l.breakLocked(fmt.Errorf("ingestlog: sync: %w", err))
		return
	}
	f, err := l.createSegment(l.next)
	if err != nil {
		l.breakLocked(fmt.Errorf("ingestlog: create segment: %w", err))
		return
	}
	l.sealed = append(l.sealed, l.f)
	l.f = f
	l.segs = append(l.segs, segment{base: l.next})
	l.dirDirty = true
}

// recoverLocked brings the files back to the durable position after a
// failed write or fsync and writes the unsynced records again; l.syncMu
// and l.mu are held. It never fsyncs a file handle that failed: every
// file is closed, segments created after the durable one are removed,
// and the durable segment is reopened from disk, checked up to the
// durable size (records durable.seg … durable.next-1, intact) and cut
// there, dropping whatever a failed write left or the page cache may no
// longer hold. On error the log stays broken and a later Sync retries;
// corruption in the durable part makes the log's sticky error.
func (l *Log) recoverLocked() error {
	d := l.durable
	for _, f := range append(l.sealed, l.f) {
		if f != nil {
			_ = f.Close() // a failed handle is not trusted to close cleanly either
		}
	}
	l.f, l.sealed = nil, nil
	i, _ := slices.BinarySearchFunc(l.segs, d.seg, bySegBase)
	if i == len(l.segs) || l.segs[i].base != d.seg {
		return l.fail(fmt.Errorf("ingestlog: recover: durable segment %d is gone", d.seg))
	}
	removed := false
	for _, s := range l.segs[i+1:] {
		if err := l.fs.Remove(l.segPath(s.base)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return l.breakLocked(fmt.Errorf("ingestlog: recover: %w", err))
		}
		removed = true
	}
	l.segs = l.segs[:i+1]
	if removed || l.dirDirty {
		if err := l.fs.SyncDir(l.opts.Dir); err != nil {
			return l.breakLocked(fmt.Errorf("ingestlog: recover: %w", err))
		}
		l.dirDirty = false
	}
	path := l.segPath(d.seg)
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return l.breakLocked(fmt.Errorf("ingestlog: recover: %w", err))
	}
	s := segReader{f: f, path: path, next: d.seg, buf: make([]byte, readBufSize)}
	var rec Record
	for err == nil {
		err = s.read(&rec, d.size)
	}
	if err == io.EOF && s.next != d.next {
		err = s.corrupt(fmt.Errorf("durable part ends at offset %d, want %d", s.next, d.next))
	}
	if err == io.EOF {
		err = f.Truncate(d.size)
	}
	if err != nil {
		f.Close()
		if _, ok := errors.AsType[*fileutil.CorruptionError](err); ok {
			return l.fail(err)
		}
		return l.breakLocked(fmt.Errorf("ingestlog: recover: %w", err))
	}
	l.f = f
	l.active().size = d.size
	l.size = 0
	for _, s := range l.segs {
		l.size += s.size
	}
	want := l.next
	l.next, l.written, l.broken = d.next, l.tail.first, nil
	l.tail.frames(l.place)
	if l.next != want {
		panic(fmt.Sprintf("ingestlog: recovery placed records up to %d, want %d", l.next, want))
	}
	if l.broken != nil {
		return l.broken
	}
	l.log.Info("ingest log recovered from a failed write or fsync; taking records again",
		"dir", l.opts.Dir, "synced_offset", d.next, "rewritten_records", want-d.next)
	return nil
}

func (l *Log) kickSync() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// background fsyncs after appends, at most once per interval, so that
// one fsync covers every record appended meanwhile (interval 0: Append
// fsyncs itself), and retries recovery every RetryInterval while a
// write or fsync has failed.
func (l *Log) background(interval time.Duration) {
	defer close(l.done)
	for {
		var retry <-chan time.Time
		if l.Broken() != nil {
			retry = time.After(l.opts.RetryInterval)
		}
		select {
		case <-l.quit:
			return
		case <-l.kick:
		case <-retry:
		}
		next := time.Now().Add(interval)
		if l.Sync() != nil && l.Err() != nil {
			return // corrupt; logged by fail
		}
		if interval <= 0 {
			continue
		}
		select {
		case <-l.quit:
			return
		case <-time.After(time.Until(next)):
		}
	}
}

// Sync makes every record appended so far durable, then advances
// SyncedOffset, wakes Notify waiters and calls the OnSync callbacks.
//
// After a failed write or fsync, Sync first recovers (see Options and
// the package documentation): it reopens the durable segment from disk,
// cuts it at the durable size and writes the records not yet durable
// again, never fsyncing a file handle that failed. Until that succeeds
// Sync returns the error and Append refuses records (ErrUnavailable).
func (l *Log) Sync() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	return l.syncLocked()
}

// syncLocked does one fsync round; l.syncMu is held.
func (l *Log) syncLocked() error {
	l.mu.Lock()
	switch {
	case l.err != nil:
		l.mu.Unlock()
		return l.err
	case l.f == nil && l.broken == nil:
		l.mu.Unlock()
		return ErrClosed
	case l.broken != nil:
		if err := l.recoverLocked(); err != nil {
			l.mu.Unlock()
			return err
		}
	}
	if l.next == l.durable.next {
		l.mu.Unlock()
		return nil
	}
	if err := l.flush(l.tail.end); err != nil {
		l.mu.Unlock()
		return err
	}
	f, dir, sealed := l.f, l.dirDirty, l.sealed
	pos := position{seg: l.active().base, size: l.active().size, next: l.next}
	cut, breaks := l.tail.end, l.breaks
	l.dirDirty, l.sealed = false, nil
	l.mu.Unlock()

	err := f.Sync()
	if err == nil && dir {
		err = l.fs.SyncDir(l.opts.Dir)
	}
	for _, s := range sealed {
		err = errors.Join(err, s.Close())
	}

	l.mu.Lock()
	if err == nil && l.breaks != breaks {
		// An append's write or fsync (a roll) failed meanwhile, maybe on
		// the file this round fsynced: with the kernel reporting an error
		// once per file, this fsync's success proves nothing.
		err = l.broken
	}
	if err != nil {
		err = l.breakLocked(fmt.Errorf("ingestlog: sync: %w", err))
		l.mu.Unlock()
		return err
	}
	l.durable = pos
	l.synced.Store(pos.next)
	l.tail.drop(cut)
	close(l.notify)
	l.notify = make(chan struct{})
	callbacks := l.onSync
	l.mu.Unlock()
	for _, fn := range callbacks {
		fn(pos.next)
	}
	return nil
}

// OnSync registers fn to be called after every fsync that makes records
// durable, with the new SyncedOffset, in increasing order. fn runs on the
// syncing goroutine and must be quick and must not call Sync or Close.
func (l *Log) OnSync(fn func(nextDurable uint64)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onSync = append(l.onSync, fn)
}

// Pause stops Append from taking records, for reason (e.g. "disk_full"),
// until Resume is called with the same reason. Sync, Readers and
// TruncateFront go on: records already appended become durable and are
// acknowledged.
func (l *Log) Pause(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paused[reason] = true
}

// Resume undoes Pause(reason).
func (l *Log) Resume(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.paused, reason)
}

// Paused returns, sorted, why Append refuses records now: the reasons
// given to Pause, PauseFull while Size() >= MaxSize, and PauseError while
// the log recovers from a failed write or fsync. Empty: taking records.
func (l *Log) Paused() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	reasons := slices.Collect(maps.Keys(l.paused))
	if l.size >= l.opts.MaxSize {
		reasons = append(reasons, PauseFull)
	}
	if l.broken != nil || l.err != nil {
		reasons = append(reasons, PauseError)
	}
	slices.Sort(reasons)
	return reasons
}

// Broken returns the failed write or fsync the log recovers from, or nil.
func (l *Log) Broken() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken
}

// Err returns the log's sticky error (corruption found while
// recovering), or nil.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Notify returns a channel that is closed when SyncedOffset advances or
// the log is closed. Take it before checking SyncedOffset, so that no
// advance is missed.
func (l *Log) Notify() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.notify
}

// SyncedOffset returns the durable end: every record with a smaller
// offset survives a crash, and only those are visible to Readers.
func (l *Log) SyncedOffset() uint64 { return l.synced.Load() }

// FirstOffset returns the offset of the oldest record kept.
func (l *Log) FirstOffset() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0].base
}

// NextOffset returns the offset the next appended record gets.
func (l *Log) NextOffset() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// Size returns the bytes of all segments, including appended records not
// yet written to the file.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// TruncateFront removes every segment whose records all have offsets
// below before, oldest first, never the active segment nor the one
// holding the durable end; offsets do not change. Callers pass the
// smallest offset a retained checkpoint still needs. Readers already
// inside a removed segment read it to its end.
func (l *Log) TruncateFront(before uint64) error {
	l.truncMu.Lock()
	defer l.truncMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	i := 0
	for i+1 < len(l.segs) && l.segs[i+1].base <= before && l.segs[i].base < l.durable.seg {
		l.size -= l.segs[i].size
		i++
	}
	drop := slices.Clone(l.segs[:i])
	l.segs = l.segs[i:]
	l.mu.Unlock()

	// One directory fsync per segment: after a crash the segments left
	// are still contiguous.
	for _, s := range drop {
		if err := l.fs.Remove(l.segPath(s.base)); err != nil {
			return fmt.Errorf("ingestlog: truncate: %w", err)
		}
		if err := l.fs.SyncDir(l.opts.Dir); err != nil {
			// The file is unlinked and its space free; only the removal
			// may not survive a crash, which leaves an old segment that
			// is still contiguous with the rest (removals go oldest
			// first, and a later directory fsync persists this one too).
			return fmt.Errorf("ingestlog: truncate: %w", err)
		}
	}
	if len(drop) > 0 {
		l.log.Debug("truncated ingest log", "dir", l.opts.Dir, "segments", len(drop), "first_offset", l.FirstOffset())
	}
	return nil
}

// Close stops the background goroutine, syncs what was appended (after
// recovering, if a write or fsync had failed) and closes the files. It
// returns the error of that last sync, if any: records it could not make
// durable were never acknowledged. Close is idempotent; Readers must be
// closed separately.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	if l.quit != nil {
		close(l.quit)
		<-l.done
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	err := l.syncLocked()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range append(l.sealed, l.f) {
		if f != nil {
			err = errors.Join(err, f.Close())
		}
	}
	l.f, l.sealed, l.broken = nil, nil, nil
	close(l.notify)
	return err
}
