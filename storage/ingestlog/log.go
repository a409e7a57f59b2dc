package ingestlog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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
)

// Options configure a Log.
type Options struct {
	Dir          string        // the log's directory, one per MQTT source
	SegmentSize  int64         // a record that would take the active segment past this starts a new one
	MaxSize      int64         // Append fails with ErrFull once Size() >= MaxSize; at least 2 × SegmentSize
	SyncInterval time.Duration // group commit: fsync at most this often; 0: only Sync fsyncs
	Logger       *slog.Logger  // nil: discard
	FS           fileutil.FS   // nil: fileutil.OSFS{Logger: Logger}
}

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

	mu       sync.Mutex
	segs     []segment // by base; the last is active
	f        fileutil.File
	wbuf     []byte // encoded records not yet written to f
	next     uint64
	size     int64
	durable  position
	notify   chan struct{} // closed and replaced when durable advances
	onSync   []func(uint64)
	sealed   []fileutil.File // fsynced by roll, closed by the next sync
	dirDirty bool            // a segment was created since the last directory fsync
	err      error           // sticky: a failed write or fsync breaks the log
	closed   bool

	syncMu  sync.Mutex    // one fsync round at a time
	truncMu sync.Mutex    // one TruncateFront at a time
	kick    chan struct{} // Append wakes the group-commit goroutine
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
	l := &Log{opts: o, fs: o.FS, log: o.Logger, notify: make(chan struct{})}
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
	if o.SyncInterval > 0 {
		l.kick, l.quit, l.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go l.groupCommit(o.SyncInterval)
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
	return filepath.Join(l.opts.Dir, fmt.Sprintf("%020d%s", base, segSuffix))
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

// Append appends r, setting r.Offset, and returns its offset. The record
// is buffered: it is durable, and visible to Readers, once SyncedOffset()
// exceeds its offset. Append returns an error wrapping ErrFull while
// Size() >= MaxSize, and the log's sticky error once a write or fsync
// has failed.
func (l *Log) Append(r *Record) (uint64, error) {
	if err := checkRecord(r); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return 0, err
	}
	if err := l.write(r); err != nil {
		return 0, err
	}
	l.kickSync()
	return r.Offset, nil
}

// AppendBatch appends every record of rs like Append and returns the
// offset of the last one (0 for an empty batch). Either all records are
// appended or, unless the log broke, none.
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
	defer l.mu.Unlock()
	if err := l.writable(); err != nil {
		return 0, err
	}
	for i := range rs {
		if err := l.write(&rs[i]); err != nil {
			return 0, err
		}
	}
	l.kickSync()
	return rs[len(rs)-1].Offset, nil
}

func (l *Log) writable() error {
	switch {
	case l.closed:
		return ErrClosed
	case l.err != nil:
		return l.err
	case l.size >= l.opts.MaxSize:
		return fmt.Errorf("%w: %s holds %d bytes, MaxSize %d", ErrFull, l.opts.Dir, l.size, l.opts.MaxSize)
	}
	return nil
}

func (l *Log) write(r *Record) error {
	r.Offset = l.next
	start := len(l.wbuf)
	l.wbuf = appendRecord(l.wbuf, r)
	n := int64(len(l.wbuf) - start)
	if act := l.active(); act.size > 0 && act.size+n > l.opts.SegmentSize {
		if err := l.roll(start); err != nil {
			return err
		}
	}
	l.active().size += n
	l.size += n
	l.next++
	if len(l.wbuf) >= flushSize {
		return l.flush(len(l.wbuf))
	}
	return nil
}

// flush writes the first n buffered bytes to the active segment.
func (l *Log) flush(n int) error {
	_, err := l.f.Write(l.wbuf[:n])
	l.wbuf = l.wbuf[:copy(l.wbuf, l.wbuf[n:])]
	if err != nil {
		return l.fail(fmt.Errorf("ingestlog: write: %w", err))
	}
	return nil
}

// roll writes the first n buffered bytes, fsyncs the active segment and
// starts a new one at l.next. So every segment but the last is complete
// and durable; the new segment's directory entry is fsynced by the next
// sync, before any of its records counts as durable.
func (l *Log) roll(n int) error {
	if err := l.flush(n); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return l.fail(fmt.Errorf("ingestlog: sync: %w", err))
	}
	f, err := l.createSegment(l.next)
	if err != nil {
		return l.fail(fmt.Errorf("ingestlog: create segment: %w", err))
	}
	l.sealed = append(l.sealed, l.f)
	l.f = f
	l.segs = append(l.segs, segment{base: l.next})
	l.dirDirty = true
	return nil
}

func (l *Log) kickSync() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// groupCommit fsyncs after appends, at most once per interval, so that
// one fsync covers every record appended meanwhile.
func (l *Log) groupCommit(interval time.Duration) {
	defer close(l.done)
	for {
		select {
		case <-l.quit:
			return
		case <-l.kick:
		}
		next := time.Now().Add(interval)
		if l.Sync() != nil {
			return // logged by fail
		}
		select {
		case <-l.quit:
			return
		case <-time.After(time.Until(next)):
		}
	}
}

// Sync makes every record appended so far durable, then advances
// SyncedOffset, wakes Notify waiters and calls the OnSync callbacks. After
// a failed fsync the log is broken: Sync and Append return that error
// forever, since the kernel may have dropped the unsynced pages.
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
	case l.f == nil:
		l.mu.Unlock()
		return ErrClosed
	case l.next == l.durable.next:
		l.mu.Unlock()
		return nil
	}
	if err := l.flush(len(l.wbuf)); err != nil {
		l.mu.Unlock()
		return err
	}
	f, dir, sealed := l.f, l.dirDirty, l.sealed
	pos := position{seg: l.active().base, size: l.active().size, next: l.next}
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
	if err != nil {
		err = l.fail(fmt.Errorf("ingestlog: sync: %w", err))
		l.mu.Unlock()
		return err
	}
	l.durable = pos
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
func (l *Log) SyncedOffset() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable.next
}

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
// below before, oldest first, never the active segment; offsets do not
// change. Callers pass the smallest offset a retained checkpoint still
// needs. Readers already inside a removed segment read it to its end.
func (l *Log) TruncateFront(before uint64) error {
	l.truncMu.Lock()
	defer l.truncMu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	i := 0
	for i+1 < len(l.segs) && l.segs[i+1].base <= before {
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
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.fail(fmt.Errorf("ingestlog: truncate: %w", err))
		}
	}
	if len(drop) > 0 {
		l.log.Debug("truncated ingest log", "dir", l.opts.Dir, "segments", len(drop), "first_offset", l.FirstOffset())
	}
	return nil
}

// Close stops the group-commit goroutine, syncs what was appended and
// closes the files. It returns the log's sticky error, if any. Close is
// idempotent; Readers must be closed separately.
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
		err = errors.Join(err, f.Close())
	}
	l.f, l.sealed = nil, nil
	close(l.notify)
	return err
}
