package state

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/linxGnu/grocksdb"

	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/keygroup"
)

// Errors.
var (
	ErrClosed       = errors.New("state: db is closed")
	ErrMemoryClosed = errors.New("state: memory is closed")
	ErrMalformedKey = errors.New("state: malformed key")
	// ErrCrossDevice: a checkpoint and a working directory must share a
	// filesystem, because restore hard-links the SST files.
	ErrCrossDevice = errors.New("state: checkpoint and working directory are on different filesystems")
	// ErrFailed is wrapped by every error of a DB after RocksDB returned an
	// error from a call that writes (Write, Flush, CreateCheckpoint,
	// DeleteKeyGroupRange): such a DB is never called again (see DB).
	ErrFailed = errors.New("state: db failed")
	// ErrCorrupt is wrapped by an Open error when RocksDB found a block
	// whose checksum does not match (it reads index and filter blocks at
	// open); RocksDB's message names the file and offset.
	ErrCorrupt = errors.New("state: corrupt db files")
)

// DefaultColumnFamily always exists; a nil *CF means it.
const DefaultColumnFamily = "default"

// Per column family defaults.
const (
	DefaultMaxWriteBufferNumber = 3
	DefaultCompression          = "lz4"
	DefaultMaxBackgroundJobs    = 2
	blockSize                   = 4 << 10
	metadataBlockSize           = 4 << 10
	maxManifestFileSize         = 1 << 20
	bloomBitsPerKey             = 10
	level0CompactionTrigger     = 8
	memtableBloomRatio          = 0.02 // ~24 bits per key at ~150 bytes per entry
)

var compressions = map[string]grocksdb.CompressionType{
	"none":   grocksdb.NoCompression,
	"snappy": grocksdb.SnappyCompression,
	"lz4":    grocksdb.LZ4Compression,
	"zstd":   grocksdb.ZSTDCompression,
}

// Options configures one RocksDB instance.
type Options struct {
	Dir string // created if missing
	// ColumnFamilies to create if missing. "default" and any column family
	// already in Dir are opened as well.
	ColumnFamilies []string
	// Memory is the shared budget; nil gives this DB a private budget of
	// DefaultManaged bytes, released by Close.
	Memory *Memory
	// CF overrides options per column family name; the entry "*" applies to
	// column families without their own entry.
	CF                map[string]CFOptions
	MaxBackgroundJobs int          // 0: DefaultMaxBackgroundJobs
	Logger            *slog.Logger // nil: discard
	// FS is what eddy's own file operations around RocksDB go through:
	// the directory fsyncs of CreateCheckpoint and the copies and fsyncs
	// of OpenFromCheckpoint. RocksDB itself writes through its own Env,
	// and hard links are made by the OS. nil: fileutil.OSFS{Logger}.
	FS fileutil.FS
}

// fs returns o.FS, or the OS logging slow fsyncs to log.
func (o Options) fs(log *slog.Logger) fileutil.FS {
	if o.FS != nil {
		return o.FS
	}
	return fileutil.OSFS{Logger: log}
}

// CFOptions tunes one column family. Zero fields take defaults: write
// buffer half the DB's db_write_buffer_size clamped to [1 MiB, 64 MiB],
// DefaultMaxWriteBufferNumber, RocksDB's arena block size, and
// DefaultCompression. Every column family uses 4 KiB blocks, 10-bit
// bloom filters (partitioned, as the index) and the shared block cache.
type CFOptions struct {
	WriteBufferSize      int64
	MaxWriteBufferNumber int
	ArenaBlockSize       int64
	Compression          string // none | snappy | lz4 | zstd
}

// Validate reports every problem in o, naming the column family.
func (o Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("state: dir is empty"))
	}
	if o.MaxBackgroundJobs < 0 {
		errs = append(errs, fmt.Errorf("state: max background jobs %d is negative", o.MaxBackgroundJobs))
	}
	for _, name := range slices.Sorted(maps.Keys(o.CF)) {
		c := o.CF[name]
		if c.WriteBufferSize < 0 || c.MaxWriteBufferNumber < 0 || c.ArenaBlockSize < 0 {
			errs = append(errs, fmt.Errorf("state: column family %q: negative size or count", name))
		}
		if _, ok := compressions[c.Compression]; c.Compression != "" && !ok {
			errs = append(errs, fmt.Errorf("state: column family %q: compression %q not one of none, snappy, lz4, zstd", name, c.Compression))
		}
	}
	return errors.Join(errs...)
}

// CF is a column family of an open DB.
type CF struct {
	name string
	h    *grocksdb.ColumnFamilyHandle
}

// Name returns the column family's name.
func (c *CF) Name() string { return c.name }

// DB is one RocksDB instance holding the keyed state of one subtask. Its
// methods may be called concurrently; Close waits for calls in progress.
// Iterators belong to the goroutine that made them.
//
// Writes skip the write-ahead log, as in Flink: a DB is durable only
// through checkpoints, which flush memtables first (CreateCheckpoint). After
// a crash the working directory is discarded and rebuilt from a checkpoint.
//
// The first error RocksDB returns from a call that writes marks the DB
// failed: it is sticky, every later call returns it (wrapping ErrFailed
// and the cause) without touching RocksDB, and Close releases the DB
// without flushing. RocksDB's file writers must not be used after an I/O
// error (an assertion aborts the process in builds that keep them), and
// the page cache of a file whose write or fsync failed can no longer be
// trusted; the owner reopens the DB from the last checkpoint instead.
type DB struct {
	dir      string
	log      *slog.Logger
	fs       fileutil.FS
	mem      *Memory
	ownMem   bool
	readOnly bool // OpenCheckpointReadOnly: Close does not flush
	stats    bool // RocksDB statistics on (Memory.EnableStatistics)

	mu     sync.RWMutex // read: any call; write: Close
	closed bool
	failMu sync.Mutex
	failed error // sticky, wraps ErrFailed; under failMu
	db     *grocksdb.DB
	cfs    []*CF
	byName map[string]*CF
	opts   []*grocksdb.Options // [0] DB options, then one per column family
	ro     *grocksdb.ReadOptions
	wo     *grocksdb.WriteOptions
	fo     *grocksdb.FlushOptions

	itMu  sync.Mutex
	iters map[*Iterator]struct{}
}

// Open creates or opens the RocksDB instance in o.Dir.
func Open(o Options) (_ *DB, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	d := &DB{dir: o.Dir, log: o.Logger, mem: o.Memory, byName: map[string]*CF{}, iters: map[*Iterator]struct{}{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.fs = o.fs(d.log)
	if d.mem == nil {
		if d.mem, err = NewMemory(MemoryOptions{}); err != nil {
			return nil, fmt.Errorf("state: open db: %w", err)
		}
		d.ownMem = true
	}
	defer func() {
		if err != nil {
			d.destroyOptions()
			if d.ownMem {
				d.mem.Close()
			}
		}
	}()
	if err := fileutil.CreateDirAllFS(d.fs, o.Dir); err != nil {
		return nil, fmt.Errorf("state: open db: %w", err)
	}

	table := grocksdb.NewDefaultBlockBasedTableOptions()
	defer table.Destroy() // the options below keep copies
	table.SetBlockSize(blockSize)
	table.SetFilterPolicy(grocksdb.NewBloomFilterFull(bloomBitsPerKey))
	table.SetCacheIndexAndFilterBlocks(true)
	table.SetCacheIndexAndFilterBlocksWithHighPriority(true)
	table.SetPinL0FilterAndIndexBlocksInCache(true)
	// Partitioned index and filters: an SST's index and filter are
	// blocks of metadataBlockSize under a small top level, which is
	// pinned, so a large file never needs its whole index in the cache
	// at once (RocksDB's advice for a bounded block cache).
	table.SetIndexType(grocksdb.KTwoLevelIndexSearchIndexType)
	table.SetPartitionFilters(true)
	table.SetMetadataBlockSize(metadataBlockSize)
	table.SetPinTopLevelIndexAndFilter(true)
	over, err := d.mem.acquire(table)
	if err != nil {
		return nil, fmt.Errorf("state: open db: %w", err)
	}
	defer func() {
		if err != nil {
			d.mem.release()
		}
	}()
	if over {
		d.log.Warn("state: more DBs open than the memory budget was split for",
			"dir", o.Dir, "num_dbs", d.mem.opts.NumDBs)
	}

	dbOpts := grocksdb.NewDefaultOptions()
	d.opts = append(d.opts, dbOpts)
	dbOpts.SetCreateIfMissing(true)
	dbOpts.SetCreateIfMissingColumnFamilies(true)
	dbOpts.SetDbWriteBufferSize(uint64(d.mem.dbWriteBuffer))
	dbOpts.SetMaxBackgroundJobs(cmp.Or(o.MaxBackgroundJobs, DefaultMaxBackgroundJobs))
	// RocksDB's LOG in Dir, written by eddy's logger, which survives a
	// full disk (RocksDB's own aborts after a failed write).
	setInfoLog(dbOpts, filepath.Join(o.Dir, "LOG"), 8<<20, grocksdb.InfoInfoLogLevel)
	dbOpts.SetStatsDumpPeriodSec(0)
	// Every checkpoint copies the MANIFEST, which grows by an edit per
	// flush and compaction until RocksDB starts a new one (1 GiB by
	// default): bounded, the copy stays small in a long run.
	dbOpts.SetMaxManifestFileSize(maxManifestFileSize)
	// Close flushes itself, and only a DB that has not failed: RocksDB's
	// own flush at shutdown would write through file writers that may have
	// seen an I/O error.
	setAvoidFlushDuringShutdown(dbOpts)
	if d.stats = d.mem.statistics(); d.stats {
		dbOpts.EnableStatistics()
	}

	names, err := d.columnFamilies(o.ColumnFamilies, dbOpts)
	if err != nil {
		return nil, fmt.Errorf("state: open db: %w", err)
	}
	for _, name := range names {
		c, ok := o.CF[name]
		if !ok {
			c = o.CF["*"]
		}
		d.opts = append(d.opts, d.cfOptions(c, table))
	}
	db, handles, err := grocksdb.OpenDbColumnFamilies(dbOpts, o.Dir, names, d.opts[1:])
	if err != nil {
		if strings.HasPrefix(err.Error(), "Corruption: ") { // RocksDB's Status::Corruption
			return nil, fmt.Errorf("state: open db %s: %w: %w", o.Dir, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("state: open db %s: %w", o.Dir, err)
	}
	d.attach(db, names, handles)
	d.mem.track(d)
	d.wo.DisableWAL(true)
	d.fo.SetWait(true)
	d.log.Info("state: opened db", "dir", o.Dir, "column_families", names,
		"db_write_buffer_size", d.mem.dbWriteBuffer)
	return d, nil
}

// columnFamilies returns "default", then those of the existing DB, then
// the wanted ones not yet there.
func (d *DB) columnFamilies(want []string, opts *grocksdb.Options) ([]string, error) {
	names := []string{DefaultColumnFamily}
	if _, err := os.Stat(filepath.Join(d.dir, "CURRENT")); err == nil {
		have, err := grocksdb.ListColumnFamilies(opts, d.dir)
		if err != nil {
			return nil, fmt.Errorf("list column families: %w", err)
		}
		names = append(names, have...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	names = append(names, want...)
	seen := map[string]bool{}
	return slices.DeleteFunc(names, func(n string) bool {
		dup := seen[n]
		seen[n] = true
		return dup
	}), nil
}

func (d *DB) cfOptions(c CFOptions, table *grocksdb.BlockBasedTableOptions) *grocksdb.Options {
	o := grocksdb.NewDefaultOptions()
	wb := c.WriteBufferSize
	if wb == 0 {
		wb = min(max(d.mem.dbWriteBuffer/2, 1<<20), 64<<20)
	}
	o.SetWriteBufferSize(uint64(wb))
	o.SetMaxWriteBufferNumber(cmp.Or(c.MaxWriteBufferNumber, DefaultMaxWriteBufferNumber))
	if c.ArenaBlockSize > 0 {
		o.SetArenaBlockSize(uint64(c.ArenaBlockSize))
	}
	// A bloom filter over the whole keys of each memtable: most lookups of
	// the write-back cache's misses are for keys no memtable holds, and
	// without it each searched every memtable's skip list (10 % of the
	// CPU of the replay after a recovery). Its bits, memtableBloomRatio
	// of the write buffer, come out of the memtable's own memory.
	o.SetMemTablePrefixBloomSizeRatio(memtableBloomRatio)
	o.SetMemtableWholeKeyFiltering(true)
	o.SetCompression(compressions[cmp.Or(c.Compression, DefaultCompression)])
	o.SetLevelCompactionDynamicLevelBytes(true)
	// Compact L0 at 8 files, not RocksDB's 4: with keys spread over the
	// whole key space every L0 file overlaps all of L-base, so an L0
	// compaction rewrites most of it; twice the L0 input per compaction
	// halves that rewrite per byte written (the replay after a restore of
	// 2.5M keys: 26.4 -> 22.7 us of CPU per reading). A lookup probes up to
	// 8 L0 files, whose filter and index blocks stay pinned.
	o.SetLevel0FileNumCompactionTrigger(level0CompactionTrigger)
	o.SetBlockBasedTableFactory(table)
	return o
}

// Dir returns the directory of the DB.
func (d *DB) Dir() string { return d.dir }

// CF returns the column family called name, or nil if it is not open.
func (d *DB) CF(name string) *CF { return d.byName[name] }

// ColumnFamilies returns the open column families, "default" first.
func (d *DB) ColumnFamilies() []*CF { return slices.Clone(d.cfs) }

func (d *DB) handle(cf *CF) *grocksdb.ColumnFamilyHandle {
	if cf == nil {
		return d.cfs[0].h
	}
	return cf.h
}

// usable returns nil if d may be called: not closed and not failed. The
// caller holds d.mu.
func (d *DB) usable() error {
	if d.closed {
		return ErrClosed
	}
	return d.Err()
}

// Err returns the sticky error of a failed DB (wrapping ErrFailed), or nil.
func (d *DB) Err() error {
	d.failMu.Lock()
	defer d.failMu.Unlock()
	return d.failed
}

// Failed reports whether d failed (see DB).
func (d *DB) Failed() bool { return d.Err() != nil }

// fail marks d failed with err, a RocksDB error wrapped by the caller, and
// returns the sticky error. Only the first error is kept.
func (d *DB) fail(err error) error {
	d.failMu.Lock()
	defer d.failMu.Unlock()
	if d.failed == nil {
		d.failed = fmt.Errorf("%w: %w", ErrFailed, err)
		d.log.Error("state: db failed; it is not used again", "dir", d.dir, "err", err)
	}
	return d.failed
}

// Get returns a copy of the value of key in cf.
func (d *DB) Get(cf *CF, key []byte) (val []byte, ok bool, err error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.usable(); err != nil {
		return nil, false, err
	}
	s, err := d.db.GetPinnedCF(d.ro, d.handle(cf), key)
	if err != nil {
		return nil, false, fmt.Errorf("state: get key: %w", err)
	}
	defer s.Destroy()
	if !s.Exists() {
		return nil, false, nil
	}
	return append([]byte{}, s.Data()...), true, nil
}

// Write applies b atomically, without the write-ahead log.
func (d *DB) Write(b *Batch) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.usable(); err != nil {
		return err
	}
	if err := d.db.Write(d.wo, b.wb); err != nil {
		return d.fail(fmt.Errorf("state: write batch: %w", err))
	}
	return nil
}

// Flush flushes the memtables of every column family and waits for it.
func (d *DB) Flush() error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.usable(); err != nil {
		return err
	}
	return d.flush()
}

func (d *DB) flush() error {
	for _, cf := range d.cfs {
		if err := d.db.FlushCF(cf.h, d.fo); err != nil {
			return d.fail(fmt.Errorf("state: flush column family %s: %w", cf.name, err))
		}
	}
	return nil
}

// DeleteKeyGroupRange deletes every key of the key groups in r from every
// column family: SST files below L0 wholly inside the range are dropped,
// the rest is covered by a range tombstone. It is how a restored DB is clipped to
// its subtask's key groups after a rescale. Open iterators may or may not
// see the deletion.
func (d *DB) DeleteKeyGroupRange(r keygroup.Range) error {
	if r.Empty() {
		return nil
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.usable(); err != nil {
		return err
	}
	lower, upper := KeyGroupRangeBounds(r)
	b := grocksdb.NewWriteBatch()
	defer b.Destroy()
	for _, cf := range d.cfs {
		err := d.db.DeleteFileInRangeCF(cf.h, grocksdb.Range{Start: lower, Limit: upper})
		if err != nil {
			return d.fail(fmt.Errorf("state: delete files of key groups %v: %w", r, err))
		}
		b.DeleteRangeCF(cf.h, lower, upper)
	}
	if err := d.db.Write(d.wo, b); err != nil {
		return d.fail(fmt.Errorf("state: delete key groups %v: %w", r, err))
	}
	return nil
}

// Property returns the integer RocksDB property name of cf (nil: default),
// such as "rocksdb.estimate-num-keys".
func (d *DB) Property(cf *CF, name string) (uint64, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.usable() != nil {
		return 0, false
	}
	return d.db.GetIntPropertyCF(name, d.handle(cf))
}

func (d *DB) sumProperty(name string) int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var n int64
	for _, cf := range d.cfs {
		if d.usable() != nil {
			return 0
		}
		v, ok := d.db.GetIntPropertyCF(name, cf.h)
		if !ok { // a string property holding a number
			i, _ := strconv.ParseInt(d.db.GetPropertyCF(name, cf.h), 10, 64)
			v = uint64(max(i, 0))
		}
		n += int64(v)
	}
	return n
}

// MemtableBytes is rocksdb.cur-size-all-mem-tables summed over column
// families: memory held by active and unflushed memtables.
func (d *DB) MemtableBytes() int64 { return d.sumProperty("rocksdb.cur-size-all-mem-tables") }

// LiveSSTBytes is rocksdb.live-sst-files-size summed over column families.
func (d *DB) LiveSSTBytes() int64 { return d.sumProperty("rocksdb.live-sst-files-size") }

// EstimateNumKeys is rocksdb.estimate-num-keys summed over column
// families; it counts overwrites and deletions until compaction.
func (d *DB) EstimateNumKeys() int64 { return d.sumProperty("rocksdb.estimate-num-keys") }

// SSTFile describes one live SST file.
type SSTFile struct {
	Name         string // base name in the DB directory, e.g. "000012.sst"
	ColumnFamily string
	Level        int
	Size         int64
	SmallestKey  []byte
	LargestKey   []byte
}

// LiveFiles returns the live SST files, sorted by name.
func (d *DB) LiveFiles() ([]SSTFile, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.usable(); err != nil {
		return nil, err
	}
	var out []SSTFile
	for _, f := range d.db.GetLiveFilesMetaData() {
		out = append(out, SSTFile{
			Name: filepath.Base(f.Name), ColumnFamily: f.ColumnFamilyName, Level: f.Level,
			Size: f.Size, SmallestKey: f.SmallestKey, LargestKey: f.LargestKey,
		})
	}
	slices.SortFunc(out, func(a, b SSTFile) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Close flushes the memtables (the only way writes survive a clean close,
// as the WAL is off), then releases the DB, its column family handles,
// options and open iterators. A failed DB is closed without a flush
// (RocksDB is told not to flush at shutdown either) and Close returns its
// sticky error. It is idempotent.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.mem.untrack(d)
	err := d.Err()
	if err == nil && !d.readOnly {
		err = d.flush()
	}
	d.itMu.Lock()
	for it := range d.iters {
		it.release(ErrClosed)
	}
	d.itMu.Unlock()
	for _, cf := range d.cfs {
		cf.h.Destroy()
	}
	d.db.Close()
	d.db = nil
	d.ro.Destroy()
	d.wo.Destroy()
	d.fo.Destroy()
	d.destroyOptions()
	d.mem.release()
	if d.ownMem {
		d.mem.Close()
	}
	// The memtables, table readers and (if no other DB holds the cache)
	// cached blocks were just freed: return every page of them before a
	// reopened DB (a restart of the job) allocates its own.
	TrimMalloc()
	d.log.Info("state: closed db", "dir", d.dir)
	return err
}

func (d *DB) destroyOptions() {
	for _, o := range d.opts {
		o.Destroy()
	}
	d.opts = nil
}

// attach makes the opened db and its column families (names[i] is
// handles[i]) d's, with default read, write and flush options.
func (d *DB) attach(db *grocksdb.DB, names []string, handles []*grocksdb.ColumnFamilyHandle) {
	d.db = db
	for i, h := range handles {
		cf := &CF{name: names[i], h: h}
		d.cfs = append(d.cfs, cf)
		d.byName[cf.name] = cf
	}
	d.ro = grocksdb.NewDefaultReadOptions()
	d.wo = grocksdb.NewDefaultWriteOptions()
	d.fo = grocksdb.NewDefaultFlushOptions()
}
