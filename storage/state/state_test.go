package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/linxGnu/grocksdb"

	"github.com/eddy-stream/eddy/storage/keygroup"
)

func openTest(t testing.TB, dir string, cfs ...string) *DB {
	t.Helper()
	db, err := Open(Options{Dir: dir, ColumnFamilies: cfs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func put(t testing.TB, db *DB, cf *CF, kv ...string) {
	t.Helper()
	b := db.NewBatch()
	defer b.Close()
	for i := 0; i < len(kv); i += 2 {
		b.Put(cf, []byte(kv[i]), []byte(kv[i+1]))
	}
	if err := db.Write(b); err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, db *DB, cf *CF, key string) (string, bool) {
	t.Helper()
	v, ok, err := db.Get(cf, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return string(v), ok
}

func TestKeyEncoding(t *testing.T) {
	for _, tc := range []struct {
		kg      uint16
		key, ns string
	}{
		{0, "", ""},
		{1, "a", ""},
		{32767, "sensor-1", "\x00\x00\x01"},
		{300, strings.Repeat("k", 300), "window"},
	} {
		k := AppendKey([]byte("junk"), tc.kg, []byte(tc.key), []byte(tc.ns))[4:]
		kg, key, ns, err := ParseKey(k)
		if err != nil || kg != tc.kg || string(key) != tc.key || string(ns) != tc.ns {
			t.Errorf("ParseKey(AppendKey(%d, %q, %q)) = %d, %q, %q, %v", tc.kg, tc.key, tc.ns, kg, key, ns, err)
		}
		if !bytes.HasPrefix(k, KeyGroupPrefix(tc.kg)) {
			t.Errorf("%x lacks key group prefix", k)
		}
		if p := AppendKey(nil, tc.kg, []byte(tc.key), nil); !bytes.HasPrefix(k, p) {
			t.Errorf("%x lacks key prefix %x", k, p)
		}
	}
	// The key prefix of "a" does not cover the key "ab".
	if bytes.HasPrefix(AppendKey(nil, 1, []byte("ab"), nil), AppendKey(nil, 1, []byte("a"), nil)) {
		t.Error("key prefix is ambiguous")
	}
	for _, bad := range []string{"", "\x00\x01", "\x00\x01\x05abc", "\x00\x01\xff"} {
		if _, _, _, err := ParseKey([]byte(bad)); !errors.Is(err, ErrMalformedKey) {
			t.Errorf("ParseKey(%q) = %v", bad, err)
		}
	}
	lo, hi := KeyGroupRangeBounds(keygroup.Range{Start: 3, End: 5})
	for kg, in := range map[uint16]bool{2: false, 3: true, 5: true, 6: false} {
		for _, k := range [][]byte{AppendKey(nil, kg, nil, nil), AppendKey(nil, kg, []byte("\xff\xff"), []byte("\xff"))} {
			if got := bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0; got != in {
				t.Errorf("key %x in [%x, %x) = %v", k, lo, hi, got)
			}
		}
	}
	if _, hi := KeyGroupRangeBounds(keygroup.Range{Start: 0, End: 32767}); !bytes.Equal(hi, []byte{0x80, 0}) {
		t.Errorf("upper bound of the last key group = %x", hi)
	}
}

func TestOptionsValidate(t *testing.T) {
	err := Options{
		MaxBackgroundJobs: -1,
		CF:                map[string]CFOptions{"a": {Compression: "gzip"}, "b": {WriteBufferSize: -1}},
	}.Validate()
	for _, want := range []string{"dir is empty", "max background jobs -1", `"a": compression "gzip"`, `"b": negative`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
	err = MemoryOptions{Managed: 1000, WriteBufferRatio: 1, HighPrioPoolRatio: -1}.Validate()
	for _, want := range []string{"below 1 MiB", "write buffer ratio 1", "high priority pool ratio -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("MemoryOptions.Validate() = %v, want %q", err, want)
		}
	}
}

func TestOpenPutGetReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, ColumnFamilies: []string{"a", "b"},
		CF: map[string]CFOptions{"a": {Compression: "zstd"}, "*": {Compression: "none"}}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := db.CF("a"), db.CF("b")
	if a == nil || b == nil || db.CF("c") != nil || len(db.ColumnFamilies()) != 3 {
		t.Fatalf("column families: %v %v %v", a, b, db.ColumnFamilies())
	}
	put(t, db, a, "k1", "a1", "k2", "a2", "k3", "a3")
	put(t, db, b, "k1", "b1")
	put(t, db, nil, "k1", "d1")
	bt := db.NewBatch()
	bt.Delete(a, []byte("k2"))
	bt.DeleteRange(a, []byte("k3"), []byte("k4"))
	bt.Put(a, []byte("empty"), nil)
	if bt.Len() != 3 || bt.Size() == 0 {
		t.Errorf("batch Len %d Size %d", bt.Len(), bt.Size())
	}
	if err := db.Write(bt); err != nil {
		t.Fatal(err)
	}
	bt.Clear()
	if bt.Len() != 0 {
		t.Error("Clear left operations")
	}
	bt.Close()
	bt.Close()

	check := func(db *DB) {
		t.Helper()
		a, b := db.CF("a"), db.CF("b")
		for _, c := range []struct {
			cf        *CF
			key, want string
			ok        bool
		}{{a, "k1", "a1", true}, {a, "k2", "", false}, {a, "k3", "", false}, {a, "empty", "", true},
			{b, "k1", "b1", true}, {nil, "k1", "d1", true}, {b, "nope", "", false}} {
			if v, ok := get(t, db, c.cf, c.key); v != c.want || ok != c.ok {
				t.Errorf("Get(%v, %s) = %q, %v; want %q, %v", c.cf.Name(), c.key, v, ok, c.want, c.ok)
			}
		}
		vals, err := db.MultiGet(a, []byte("k1"), []byte("k2"), []byte("empty"))
		if err != nil || string(vals[0]) != "a1" || vals[1] != nil || vals[2] == nil {
			t.Errorf("MultiGet = %q, %v", vals, err)
		}
	}
	check(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, _, err := db.Get(a, []byte("k1")); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v", err)
	}
	if it := db.NewIterator(a, nil, nil); it.Valid() || !errors.Is(it.Err(), ErrClosed) {
		t.Errorf("iterator after Close: valid %v err %v", it.Valid(), it.Err())
	}

	// Reopen naming only "b": "a" is still opened, and the data survived
	// Close although the WAL is off.
	db = openTest(t, dir, "b")
	if db.CF("a") == nil {
		t.Fatal("existing column family a not opened")
	}
	check(db)
}

func TestIterateAndDeleteKeyGroupRange(t *testing.T) {
	db := openTest(t, t.TempDir(), "s", "timers")
	s, tm := db.CF("s"), db.CF("timers")
	// Three SSTs per column family below L0: kgs [3,5], then [0,2], then [6,9].
	for _, r := range []keygroup.Range{{Start: 3, End: 5}, {Start: 0, End: 2}, {Start: 6, End: 9}} {
		b := db.NewBatch()
		for kg := r.Start; kg <= r.End; kg++ {
			for i := range 20 {
				k := AppendKey(nil, kg, []byte(strconv.Itoa(i)), []byte("ns"))
				b.Put(s, k, []byte{byte(kg)})
				b.Put(tm, k, nil)
			}
		}
		if err := db.Write(b); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		lo, hi := KeyGroupRangeBounds(r)
		for _, cf := range []*CF{s, tm} {
			db.db.CompactRangeCF(cf.h, grocksdb.Range{Start: lo, Limit: hi})
		}
	}
	count := func(cf *CF, r keygroup.Range) map[uint16]int {
		lo, hi := KeyGroupRangeBounds(r)
		it := db.NewIterator(cf, lo, hi)
		defer it.Close()
		n := map[uint16]int{}
		var prev []byte
		for ; it.Valid(); it.Next() {
			kg, _, ns, err := ParseKey(it.Key())
			if err != nil || string(ns) != "ns" || bytes.Compare(prev, it.Key()) >= 0 {
				t.Fatalf("bad key %x after %x: %v", it.Key(), prev, err)
			}
			if cf == s && it.Value()[0] != byte(kg) {
				t.Fatalf("value of %x = %x", it.Key(), it.Value())
			}
			prev = append(prev[:0], it.Key()...)
			n[kg]++
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := fmt.Sprint(count(s, keygroup.Range{Start: 3, End: 5})); got != "map[3:20 4:20 5:20]" {
		t.Errorf("range [3,5] = %s", got)
	}
	sst := len(mustLiveFiles(t, db))
	if err := db.DeleteKeyGroupRange(keygroup.Range{Start: 3, End: 5}); err != nil {
		t.Fatal(err)
	}
	if got := len(mustLiveFiles(t, db)); sst != 6 || got != 4 {
		t.Errorf("live SSTs %d → %d, want the two inside the range dropped", sst, got)
	}
	for _, cf := range []*CF{s, tm} {
		got := count(cf, keygroup.Range{Start: 0, End: 32767})
		if fmt.Sprint(got) != "map[0:20 1:20 2:20 6:20 7:20 8:20 9:20]" {
			t.Errorf("%s after delete: %v", cf.Name(), got)
		}
	}

	// Seek within bounds; an iterator left open is released by Close.
	lo, hi := KeyGroupRangeBounds(keygroup.Range{Start: 6, End: 7})
	it := db.NewIterator(s, lo, hi)
	it.Seek(KeyGroupPrefix(7))
	if kg, _, _, _ := ParseKey(it.Key()); !it.Valid() || kg != 7 {
		t.Errorf("Seek(7) at kg %d", kg)
	}
	it.Seek(KeyGroupPrefix(9))
	if it.Valid() {
		t.Error("Seek beyond upper bound is valid")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if it.Valid() || !errors.Is(it.Err(), ErrClosed) {
		t.Errorf("iterator after DB.Close: %v", it.Err())
	}
	it.Close()
}

func mustLiveFiles(t testing.TB, db *DB) []SSTFile {
	t.Helper()
	files, err := db.LiveFiles()
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestMemoryBudget(t *testing.T) {
	mem, err := NewMemory(MemoryOptions{Managed: 64 << 20, NumDBs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if mem.BlockCacheCapacity() != 16<<20 || mem.DBWriteBufferSize() != 16<<20 || mem.WriteCacheBytes() != 8<<20 {
		t.Fatalf("cache %d, write buffer %d, write cache %d", mem.BlockCacheCapacity(), mem.DBWriteBufferSize(), mem.WriteCacheBytes())
	}
	var dbs []*DB
	for i := range 2 {
		dir := filepath.Join(t.TempDir(), strconv.Itoa(i))
		db, err := Open(Options{Dir: dir, ColumnFamilies: []string{"s"}, Memory: mem})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs = append(dbs, db)

		for _, cf := range db.ColumnFamilies() {
			if c, _ := db.Property(cf, "rocksdb.block-cache-capacity"); c != 16<<20 {
				t.Errorf("db %d %s: block cache capacity %d", i, cf.Name(), c)
			}
		}
		opts := readFile(t, dir, "OPTIONS-*")
		for _, want := range []string{
			`db_write_buffer_size=16777216`, `write_buffer_size=8388608`, `block_size=4096`,
			`cache_index_and_filter_blocks=true`, `cache_index_and_filter_blocks_with_high_priority=true`,
			`pin_l0_filter_and_index_blocks_in_cache=true`, `filter_policy=bloomfilter`,
			`index_type=kTwoLevelIndexSearch`, `partition_filters=true`, `pin_top_level_index_and_filter=true`,
			`compression=kLZ4Compression`,
		} {
			if !strings.Contains(opts, want) {
				t.Errorf("db %d: OPTIONS lack %s", i, want)
			}
		}
		log := readFile(t, dir, "LOG")
		for _, re := range []string{`capacity : 16777216`, `strict_capacity_limit : 0`, `high_pri_pool_ratio: 0\.100`} {
			if !regexp.MustCompile(re).MatchString(log) {
				t.Errorf("db %d: LOG lacks %s", i, re)
			}
		}
	}

	// Both DBs fill one cache; the budget holds although the data does not fit.
	val := bytes.Repeat([]byte("v"), 1000)
	for _, db := range dbs {
		b := db.NewBatch()
		for i := range 60000 {
			b.Put(db.CF("s"), AppendKey(nil, uint16(i%128), []byte(strconv.Itoa(i)), nil), val)
		}
		if err := db.Write(b); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		for i := range 60000 {
			if _, ok := get(t, db, db.CF("s"), string(AppendKey(nil, uint16(i%128), []byte(strconv.Itoa(i)), nil))); !ok {
				t.Fatalf("key %d missing", i)
			}
		}
	}
	if u := mem.BlockCacheUsage(); u == 0 || u > mem.BlockCacheCapacity() {
		t.Errorf("block cache usage %d, capacity %d", u, mem.BlockCacheCapacity())
	}
	if p := mem.BlockCachePinnedUsage(); p == 0 {
		t.Error("no pinned L0 index and filter blocks")
	}
	if dbs[0].LiveSSTBytes() == 0 || dbs[0].EstimateNumKeys() < 50000 {
		t.Errorf("live SST bytes %d, keys %d", dbs[0].LiveSSTBytes(), dbs[0].EstimateNumKeys())
	}
	put(t, dbs[0], nil, "x", "y")
	if dbs[0].MemtableBytes() == 0 {
		t.Error("memtable bytes 0 after a write")
	}

	// Closing the budget first leaves the DBs working.
	mem.Close()
	mem.Close()
	if _, ok := get(t, dbs[1], dbs[1].CF("s"), string(AppendKey(nil, 1, []byte("1"), nil))); !ok {
		t.Error("read after Memory.Close failed")
	}
	if _, err := Open(Options{Dir: t.TempDir(), Memory: mem}); !errors.Is(err, ErrMemoryClosed) {
		t.Errorf("Open with closed memory = %v", err)
	}
}

func readFile(t testing.TB, dir, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	b, err := os.ReadFile(m[len(m)-1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCheckpointRestore(t *testing.T) {
	root := t.TempDir()
	db := openTest(t, filepath.Join(root, "work"), "s")
	s := db.CF("s")
	put(t, db, s, "a", "1", "b", "2")
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	put(t, db, s, "c", "3") // only in the memtable: the checkpoint flushes it
	cp := filepath.Join(root, "checkpoints", "chk-1", "task-0")
	if err := db.CreateCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateCheckpoint(cp); err == nil {
		t.Error("checkpoint into an existing dir succeeded")
	}
	put(t, db, s, "d", "4", "a", "changed")

	work := filepath.Join(root, "restored")
	rdb, err := OpenFromCheckpoint(cp, work, Options{ColumnFamilies: []string{"s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	for k, want := range map[string]string{"a": "1", "b": "2", "c": "3", "d": ""} {
		if v, _ := get(t, rdb, rdb.CF("s"), k); v != want {
			t.Errorf("restored %s = %q, want %q", k, v, want)
		}
	}

	// SSTs are hard links of the checkpoint's (and of the source DB's);
	// the small mutable files are copies.
	entries, err := os.ReadDir(cp)
	if err != nil {
		t.Fatal(err)
	}
	var ssts int
	for _, e := range entries {
		a, err := os.Stat(filepath.Join(cp, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.Stat(filepath.Join(work, e.Name()))
		if errors.Is(err, os.ErrNotExist) && !immutable(e.Name()) {
			continue // rewritten by the restored DB (old MANIFEST, OPTIONS)
		} else if err != nil {
			t.Fatal(err)
		}
		if same := os.SameFile(a, b); same != immutable(e.Name()) {
			t.Errorf("%s: same file %v", e.Name(), same)
		}
		if immutable(e.Name()) {
			ssts++
			if src, err := os.Stat(filepath.Join(db.Dir(), e.Name())); err != nil || !os.SameFile(a, src) {
				t.Errorf("%s: checkpoint file is not a link of the source DB's: %v", e.Name(), err)
			}
		}
	}
	if ssts < 2 {
		t.Errorf("%d SSTs in the checkpoint, want ≥ 2", ssts)
	}

	// The restored DB diverges without touching the checkpoint, which
	// restores again to the same contents.
	put(t, rdb, rdb.CF("s"), "a", "restored")
	if err := rdb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenFromCheckpoint(cp, filepath.Join(root, "again"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if v, _ := get(t, again, again.CF("s"), "a"); v != "1" {
		t.Errorf("second restore: a = %q", v)
	}
	if _, err := OpenFromCheckpoint(cp, filepath.Join(root, "again"), Options{}); err == nil {
		t.Error("restore into an existing dir succeeded")
	}
	if _, err := OpenFromCheckpoint(filepath.Join(root, "nope"), filepath.Join(root, "x"), Options{}); err == nil {
		t.Error("restore of a missing checkpoint succeeded")
	} else if _, err := os.Stat(filepath.Join(root, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Error("failed restore left its working dir")
	}
}

func TestRestoreCrossDevice(t *testing.T) {
	other := "/dev/shm"
	tmp := t.TempDir()
	var a, b syscall.Stat_t
	if syscall.Stat(other, &a) != nil || syscall.Stat(tmp, &b) != nil || a.Dev == b.Dev {
		t.Skip("no second filesystem")
	}
	db := openTest(t, filepath.Join(tmp, "work"))
	put(t, db, nil, "a", "1")
	cp := filepath.Join(tmp, "cp")
	if err := db.CreateCheckpoint(cp); err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp(other, "eddy-state-test-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(work)
	_, err = OpenFromCheckpoint(cp, filepath.Join(work, "w"), Options{})
	if !errors.Is(err, ErrCrossDevice) || !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("restore across filesystems = %v", err)
	}
	t.Log(err)
}

func BenchmarkGet(b *testing.B) {
	db := openTest(b, b.TempDir(), "s")
	s := db.CF("s")
	const n = 100000
	val := bytes.Repeat([]byte("v"), 100)
	batch := db.NewBatch()
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = AppendKey(nil, uint16(i%128), []byte(strconv.Itoa(i)), nil)
		batch.Put(s, keys[i], val)
	}
	if err := db.Write(batch); err != nil {
		b.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		if _, ok, err := db.Get(s, keys[i%n]); !ok || err != nil {
			b.Fatal(ok, err)
		}
		i += 7919
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
}

func BenchmarkBatchPut(b *testing.B) {
	db := openTest(b, b.TempDir(), "s")
	s := db.CF("s")
	val := bytes.Repeat([]byte("v"), 100)
	batch := db.NewBatch()
	defer batch.Close()
	var key []byte
	i := 0
	for b.Loop() {
		key = AppendKey(key[:0], uint16(i%128), []byte(strconv.Itoa(i)), nil)
		batch.Put(s, key, val)
		if i++; batch.Len() == 1000 {
			if err := db.Write(batch); err != nil {
				b.Fatal(err)
			}
			batch.Clear()
		}
	}
	if err := db.Write(batch); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(key) + len(val)))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// TestMultiGetFunc: one batched MultiGet of many keys, present, absent,
// repeated and empty-valued, in any order; fn sees each present key in
// order of its index, and its error stops the calls.
func TestMultiGetFunc(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir(), ColumnFamilies: []string{"s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cf := db.CF("s")
	b := db.NewBatch()
	defer b.Close()
	for i := 0; i < 1000; i += 2 {
		b.Put(cf, []byte("k"+strconv.Itoa(i)), []byte("v"+strconv.Itoa(i)))
	}
	b.Put(cf, []byte("empty"), nil)
	b.Put(nil, []byte("k1"), []byte("default")) // another column family
	if err := db.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	var keys [][]byte
	for i := 999; i >= 0; i -= 3 {
		keys = append(keys, []byte("k"+strconv.Itoa(i)))
	}
	keys = append(keys, []byte("k4"), []byte("k4"), []byte("empty"), []byte("nope"))
	got := map[int]string{}
	last := -1
	err = db.MultiGetFunc(cf, keys, func(i int, v []byte) error {
		if i <= last {
			t.Errorf("index %d after %d", i, last)
		}
		last = i
		got[i] = string(v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		var want string
		var ok bool
		switch n, err := strconv.Atoi(string(k[1:])); {
		case string(k) == "empty":
			ok = true
		case err == nil && n%2 == 0:
			want, ok = "v"+strconv.Itoa(n), true
		}
		if v, has := got[i]; has != ok || v != want {
			t.Errorf("key %s: got %q, %v; want %q, %v", k, v, has, want, ok)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err = db.MultiGetFunc(cf, keys, func(int, []byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("MultiGetFunc with a failing fn = %v after %d calls", err, calls)
	}
	if err := db.MultiGetFunc(cf, nil, nil); err != nil {
		t.Errorf("no keys: %v", err)
	}
}

// SumProperty adds up integer properties and string properties holding a
// number over every column family of every DB open with the budget.
func TestSumProperty(t *testing.T) {
	mem, err := NewMemory(MemoryOptions{Managed: 16 << 20, NumDBs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for i := range 2 {
		db, err := Open(Options{Dir: filepath.Join(t.TempDir(), strconv.Itoa(i)), ColumnFamilies: []string{"s"}, Memory: mem})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for round := range i + 1 { // DB i gets i+1 L0 files in "s", none in "default"
			put(t, db, db.CF("s"), "k"+strconv.Itoa(round), "v")
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := mem.SumProperty("rocksdb.num-files-at-level0"); n != 3 { // a string property
		t.Errorf("L0 files: %d, want 3", n)
	}
	if n := mem.SumProperty("rocksdb.estimate-num-keys"); n != 3 { // an integer property
		t.Errorf("keys: %d, want 3", n)
	}
	if n := mem.SumProperty("rocksdb.no-such-property"); n != 0 {
		t.Errorf("unknown property: %d, want 0", n)
	}
}
