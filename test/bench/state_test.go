package bench

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/test/eddytest"
)

// The state benchmarks build keyed state through the real pipeline:
// readings of many distinct devices (UUID-sized ids, 50 readings per
// message) into a tumbling one-hour window that does not close during the
// run, so every device keeps one open window and one timer in RocksDB. The
// window stage is a per-device hourly summary (hourlyAggregates, about
// 110 bytes of checkpointed state per key), so that about 1 GiB of state
// takes 10 million keys; the demo's 4 aggregates would need 16 million,
// which takes too long to build on the 2-core box.

var hourWindow = pipeline.WindowSpec{Type: "tumbling", Size: time.Hour}

// hourlyAggregates: count, and avg, min, max, first and last of
// temperature, humidity and temp_f (16 aggregates).
func hourlyAggregates() map[string]string {
	m := map[string]string{"count": "count()"}
	for _, f := range []string{"temperature", "humidity", "temp_f"} {
		for _, fn := range []string{"avg", "min", "max", "first", "last"} {
			m[fn+"_"+f] = fn + "(" + f + ")"
		}
	}
	return m
}

// State sizes, in keys (about 110 bytes of checkpoint each).
const (
	keysLarge  = 10_000_000 // ≈ 1 GiB
	keysSmall  = 2_500_000  // ≈ 256 MiB
	keysMedium = 2_000_000  // ≈ 200 MiB, the incremental-size benchmark
)

// stateBase is the event time of the state benchmarks: the start of an
// hour; every reading is in its first minute, so no window closes.
var stateBase = simulate.DefaultStart.UnixMilli()

const (
	statePerMsg = 50
	bulkTopic   = "sensors/bulk/bulk/telemetry"
	stateChunk  = 200_000
)

// appendKeys appends one reading for each key in [from, to).
func (e *env) appendKeys(from, to int) {
	for lo := from; lo < to; lo += stateChunk {
		hi := min(lo+stateChunk, to)
		keys := make([]int, hi-lo)
		for i := range keys {
			keys[i] = lo + i
		}
		e.appendRaw(bulkTopic, bulkPayloads(keys, len(keys), statePerMsg,
			func(j int) int64 { return stateBase + int64(lo+j)/1000 }, uint64(lo)))
	}
}

// appendUpdates appends one reading for each of keys, in chunks.
func (e *env) appendUpdates(keys []int, seed uint64) {
	for lo := 0; lo < len(keys); lo += stateChunk {
		hi := min(lo+stateChunk, len(keys))
		e.appendRaw(bulkTopic, bulkPayloads(keys[lo:hi], hi-lo, statePerMsg,
			func(int) int64 { return stateBase + 50_000 }, seed+uint64(lo)))
	}
}

// randomKeys draws n keys uniformly from [0, nkeys), with repetition.
func randomKeys(nkeys, n int, seed uint64) []int {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]int, n)
	for i := range out {
		out[i] = rng.IntN(nkeys)
	}
	return out
}

// sampleKeys draws n distinct keys from [0, nkeys).
func sampleKeys(nkeys, n int, seed uint64) []int {
	rng := rand.New(rand.NewPCG(seed, 11))
	seen := make(map[int]struct{}, n)
	out := make([]int, 0, n)
	for len(out) < n {
		k := rng.IntN(nkeys)
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}

// stateSpec is the state benchmarks' job: the demo stages with a one-hour
// window and the hourly summary, 256 MiB RocksDB budget (the default
// state.memory.managed), checkpoints only when triggered.
func (e *env) stateSpec(incremental bool) pipeline.JobSpec {
	s := e.spec(2, hourWindow, &pipeline.CheckpointOptions{
		Mode: "exactly_once", Timeout: 5 * time.Minute, NumRetained: 2, Incremental: incremental, History: 1000,
	})
	s.Stages[2].Aggregates = hourlyAggregates()
	return s
}

func stateEnv(b *testing.B) *env {
	return newEnv(b, envOptions{managed: 256 << 20, parallelism: 2, checkpoints: true})
}

// buildState appends nkeys keys, runs the job until every key is in and
// returns the running job and the build rate in keys per second. The peak
// RSS is reset once the keys are in the log; e.buildMem is the memory at
// the peak of the build.
func (e *env) buildState(spec pipeline.JobSpec, nkeys int) (*running, float64) {
	e.b.Helper()
	e.appendKeys(0, nkeys)
	resetPeakRSS(e.b)
	s := startMemSampler(e.mem, peakHeapProfile(e.b, "_build"))
	cpu0, gc0 := cpuSeconds(os.Getpid()), gcCPUSeconds()
	r := e.start(e.newJob(spec))
	el := r.waitKeyed(int64(nkeys), 30*time.Minute)
	e.buildMem = s.end()
	e.buildGCPct = 100 * (gcCPUSeconds() - gc0) / (cpuSeconds(os.Getpid()) - cpu0)
	return r, float64(nkeys) / el.Seconds()
}

// trigger takes a checkpoint now and returns its statistics.
func (r *running) trigger() *pipeline.CheckpointStats {
	r.e.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	id, err := r.job.TriggerCheckpoint(ctx)
	if err != nil {
		r.e.b.Fatalf("checkpoint: %v", err)
	}
	return r.details(id)
}

func (r *running) details(id int64) *pipeline.CheckpointStats {
	r.e.b.Helper()
	d, ok := r.job.Stats().Details(id)
	if !ok {
		r.e.b.Fatalf("checkpoint %d not in the statistics", id)
	}
	return d
}

// keyedSubtasks returns the window stage's subtask figures of cs.
func keyedSubtasks(cs *pipeline.CheckpointStats) []pipeline.SubtaskStats {
	if ts := cs.Tasks["per_device"]; ts != nil {
		return ts.Subtasks
	}
	return nil
}

// BenchmarkCheckpointSync (f): the synchronous phase of checkpoints (write
// the write-back cache's dirty entries into RocksDB, pass the barrier on)
// on each keyed subtask, with about 1 GiB of state, checkpoints every
// second while updates to random keys stream in. p50_ms, p99_ms and max_ms
// are over every keyed subtask of every checkpoint taken during the update
// stream; first_sync_ms is the checkpoint right after the build.
// async_p50_ms/_p99_ms/_max_ms are the asynchronous phase, which holds the
// native RocksDB checkpoint: native_p50_ms and native_p99_ms are the time
// in state.DB.CreateCheckpoint (memtable flush and hard links), of which
// memtable_flush_p50_ms/_p99_ms the memtable flush. sync_write_p50_ms/
// _p99_ms are the part of the sync phase that writes the dirty entries
// (encode them, state.DB.Write), sync_wait_max_ms the longest wait for the previous
// checkpoint's native part (0 with max_concurrent 1). block_cache_MiB is the
// block cache's usage at the end. peak_rss_MiB is the test
// process's peak over the build and over the update stream (reset between
// them, once the test's update messages are garbage); over_budget_MiB is
// how far it is above the managed budget. build_* and update_* split the
// memory at the highest RSS sampled (every 200 ms) in each phase: Go
// (go_MiB, of it go_heap_objects_MiB), RocksDB's memtables, block cache
// (of it pinned) and table readers, file_MiB (mapped files: the binary
// and libraries), and other_MiB, the rest (malloc overhead and
// fragmentation, RocksDB's other allocations, stacks); malloc_in_use_MiB
// and malloc_free_MiB are jemalloc's own account of the C heap
// allocated and resident but not allocated (stats.allocated,
// stats.resident − stats.allocated).
func BenchmarkCheckpointSync(b *testing.B) {
	const updates = 700_000
	e := stateEnv(b)
	r, rate := e.buildState(e.stateSpec(true), keysLarge)
	first := r.trigger()
	e.times.take(msgCreatedCheckpoint)
	e.times.take(msgCreatedCheckpoint + " flush")
	e.times.take(msgSyncPhase + " write")
	e.times.take(msgSyncPhase + " wait")
	var firstSync int64
	for _, s := range keyedSubtasks(first) {
		firstSync = max(firstSync, s.Checkpoint.Sync)
	}
	f0 := r.figures()
	buildRSS := peakRSSMiB(b, "self")
	e.appendUpdates(randomKeys(keysLarge, updates, 3), 1<<40)
	resetPeakRSS(b) // the update messages made by the test are garbage now
	b.ResetTimer()
	prof := phaseProfile(b)
	sampler := startMemSampler(e.mem, peakHeapProfile(b, "_update"))
	t0, cpu0, gc0 := time.Now(), cpuSeconds(os.Getpid()), gcCPUSeconds()
	r.job.SetCheckpointTiming(time.Second, 0)
	target := f0.KeyedIn + updates
	ok := eddytest.Poll(20*time.Minute, 5*time.Millisecond, func() bool {
		f := r.figures()
		return f.Processed() >= target
	})
	el := time.Since(t0)
	cpu, gc := cpuSeconds(os.Getpid())-cpu0, gcCPUSeconds()-gc0
	r.job.SetCheckpointTiming(0, 0)
	updateMem := sampler.end()
	prof()
	b.StopTimer()
	if !ok {
		b.Fatalf("updates not processed: %+v", r.figures())
	}
	// Let a checkpoint in flight finish.
	eddytest.Poll(time.Minute, 20*time.Millisecond, func() bool { return r.job.Stats().Overview().Counts.InProgress == 0 })
	var syncs, asyncs []float64
	var stateSize int64
	var n int
	for _, c := range r.job.Stats().Overview().History {
		if c.ID == first.ID || c.Status != pipeline.StatusCompleted {
			continue
		}
		n++
		stateSize = max(stateSize, c.StateSize)
		for _, s := range keyedSubtasks(r.details(c.ID)) {
			syncs = append(syncs, float64(s.Checkpoint.Sync))
			asyncs = append(asyncs, float64(s.Checkpoint.Async))
		}
	}
	rss := max(buildRSS, peakRSSMiB(b, "self"))
	native := e.times.take(msgCreatedCheckpoint)
	nativeFlush := e.times.take(msgCreatedCheckpoint + " flush")
	syncWrite := e.times.take(msgSyncPhase + " write")
	syncWait := e.times.take(msgSyncPhase + " wait")
	blockCache := e.mem.BlockCacheUsage()
	r.stop()
	b.ReportMetric(quantile(syncs, .5), "p50_ms")
	b.ReportMetric(quantile(native, .5), "native_p50_ms")
	b.ReportMetric(quantile(native, .99), "native_p99_ms")
	b.ReportMetric(quantile(nativeFlush, .5), "memtable_flush_p50_ms")
	b.ReportMetric(quantile(nativeFlush, .99), "memtable_flush_p99_ms")
	metric(b, quantile(syncs, .99), "p99_ms")
	b.ReportMetric(quantile(syncs, 1), "max_ms")
	b.ReportMetric(quantile(syncWrite, .5), "sync_write_p50_ms")
	b.ReportMetric(quantile(syncWrite, .99), "sync_write_p99_ms")
	b.ReportMetric(quantile(syncWait, 1), "sync_wait_max_ms")
	b.ReportMetric(quantile(asyncs, .5), "async_p50_ms")
	b.ReportMetric(quantile(asyncs, .99), "async_p99_ms")
	b.ReportMetric(quantile(asyncs, 1), "async_max_ms")
	b.ReportMetric(float64(firstSync), "first_sync_ms")
	b.ReportMetric(float64(n), "checkpoints")
	metric(b, mib(max(stateSize, first.StateSize)), "state_MiB")
	b.ReportMetric(float64(keysLarge), "keys")
	b.ReportMetric(rate, "build_keys/s")
	b.ReportMetric(float64(updates)/el.Seconds(), "update_readings/s")
	b.ReportMetric(cpu*1e6/updates, "update_cpu_us/reading")
	b.ReportMetric(100*gc/cpu, "update_gc_cpu_pct")
	metric(b, rss, "peak_rss_MiB")
	b.ReportMetric(rss-mib(e.mem.Options().Managed), "over_budget_MiB")
	b.ReportMetric(mib(blockCache), "block_cache_MiB")
	e.buildMem.report(b, "build_")
	b.ReportMetric(e.buildGCPct, "build_gc_cpu_pct")
	updateMem.report(b, "update_")
	reportLoad(b)
}

// BenchmarkCheckpointSize (g): bytes a checkpoint adds when 5 % of the
// keys change between checkpoints: incremental (native RocksDB checkpoint,
// only SST files new since the previous checkpoint count) against full
// snapshots (incremental: false), uncompressed and snappy. Each variant
// builds its own state of keysMedium keys, takes a first checkpoint, then
// runs 6 rounds of "update 5 % of the keys, checkpoint". bytes is the
// mean checkpointed size of those rounds; ratio is bytes / the bytes of
// the uncompressed full snapshot.
func BenchmarkCheckpointSize(b *testing.B) {
	const rounds = 6
	const share = 0.05
	var full float64
	for _, v := range []struct {
		name        string
		incremental bool
		compression string
	}{
		{"full", false, "none"},
		{"full_snappy", false, "snappy"},
		{"incremental", true, "none"},
	} {
		b.Run(v.name, func(b *testing.B) {
			e := stateEnv(b)
			spec := e.stateSpec(v.incremental)
			spec.Checkpointing.Compression = v.compression
			r, _ := e.buildState(spec, keysMedium)
			first := r.trigger()
			b.ResetTimer()
			var ck, st, dur []float64
			kinds := map[string]bool{}
			for i := range rounds {
				f0 := r.figures()
				keys := sampleKeys(keysMedium, int(share*keysMedium), uint64(100+i))
				e.appendUpdates(keys, uint64(i+1)<<32)
				r.waitKeyed(f0.KeyedIn+int64(len(keys)), 10*time.Minute)
				d := r.trigger()
				ck = append(ck, float64(d.CheckpointedSize))
				st = append(st, float64(d.StateSize))
				dur = append(dur, float64(d.EndToEndDuration))
				md, err := e.store.Load(d.ID)
				if err != nil {
					b.Fatal(err)
				}
				for name, ts := range md.Tasks {
					if name != "source-readings" {
						kinds[ts.Kind] = true
					}
				}
			}
			b.StopTimer()
			r.stop()
			var sum float64
			for _, c := range ck {
				sum += c
			}
			mean := sum / float64(len(ck))
			b.ReportMetric(mean, "bytes")
			b.ReportMetric(mean/(1<<20), "checkpointed_MiB")
			b.ReportMetric(quantile(ck, 1)/(1<<20), "max_checkpointed_MiB")
			metric(b, quantile(st, 1)/(1<<20), "state_MiB")
			b.ReportMetric(float64(first.CheckpointedSize)/(1<<20), "first_checkpointed_MiB")
			b.ReportMetric(quantile(dur, .5), "duration_p50_ms")
			reportLoad(b)
			switch {
			case v.name == "full":
				full = mean
			case full > 0:
				b.ReportMetric(mean/full, "ratio")
			}
			if !v.incremental && kinds[checkpoint.KindNative] {
				b.Logf("incremental: false still produced %q task checkpoints (kinds %v): full snapshots are not in place",
					checkpoint.KindNative, kinds)
			}
			b.Logf("%s: task kinds %v, checkpointed bytes per round %.0f", v.name, kinds, ck)
		})
	}
}

// BenchmarkRecovery (h, i): local recovery of a keyed state of two sizes.
// Each run builds the state, checkpoints, stops, appends a tail of 300k
// updates that the checkpoint does not cover, then does what the daemon
// does at startup: remove the working state, find the newest local
// checkpoint (store.Latest(false)), start its full verification in the
// background, and NewJob with Restore. recovery_ms is from Latest until the
// first record reaches a keyed subtask; newjob_ms is the part spent in
// NewJob, open_db_ms the slowest state.OpenFromCheckpoint (hard links and
// RocksDB open); replay readings/s is the rate at which the tail is then
// replayed. The restore starts cold, as after a reboot: a new block
// cache, and the page cache of the checkpoint's files dropped
// (cold_MiB is their size). peak_rss_MiB is the test process's peak from
// the restore on; over_budget_MiB is how far it is above the managed
// budget (target: at most 128 MiB), split as in CheckpointSync (no prefix).
// The restored DBs keep RocksDB's statistics: *_miss/reading and
// data_hit/reading are block cache misses and hits per replayed reading
// (each reading is one key looked up), cache_insert_B/reading the bytes
// read into the block cache per reading; compact_read_B/reading,
// compact_write_B/reading and flush_write_B/reading the bytes RocksDB's
// compactions read and wrote and its memtable flushes wrote during the
// replay, per reading. resident_first_pct and
// resident_end_pct are the share of the restored SST files in the page
// cache (mincore) at the first record and at the end of the replay.
// replay_cpu_us/reading is the test process's CPU time (every thread:
// RocksDB's compactions, the background verification) over the replay
// per reading, which depends less on the box's load than the rate; of
// it, compact_cpu_us/reading and flush_cpu_us/reading are RocksDB's
// compaction and flush threads. l0_files_first and
// pending_compaction_MiB_first are the L0 files and RocksDB's estimate of
// the compaction owed, summed over the restored DBs, at the first record:
// the compaction debt the checkpoint brought along, which the replay pays.
func BenchmarkRecovery(b *testing.B) {
	const tail = 300_000
	for _, nkeys := range []int{keysSmall, keysLarge} {
		b.Run("keys="+strconv.Itoa(nkeys), func(b *testing.B) {
			e := stateEnv(b)
			spec := e.stateSpec(true)
			r, _ := e.buildState(spec, nkeys)
			cs := r.trigger()
			r.stop()
			e.mem.Close() // its block cache: a restarted process has none
			e.appendUpdates(randomKeys(nkeys, tail, 5), 1<<41)

			if err := os.RemoveAll(spec.State.Dir); err != nil {
				b.Fatal(err)
			}
			spec.State.Memory = e.freshMemory()
			spec.State.Memory.EnableStatistics()
			cold := dropPageCache(b, filepath.Join(e.dir, "checkpoints"))
			e.times.take(msgRestoredCheckpoint)
			resetPeakRSS(b)
			b.ResetTimer()
			prof := phaseProfile(b)
			sampler := startMemSampler(spec.State.Memory, peakHeapProfile(b, ""))
			t0 := time.Now()
			md, broken, err := e.store.Latest(false)
			if err != nil || md == nil || len(broken) > 0 {
				b.Fatalf("latest checkpoint: %v %v %v", md, broken, err)
			}
			if md.ID != cs.ID {
				b.Fatalf("latest checkpoint is %d, want %d", md.ID, cs.ID)
			}
			verified := make(chan error, 1)
			go func() { verified <- e.store.Verify(md, true) }()
			spec.Restore, spec.RestoreVerified, spec.RestoreSource = md, verified, "local"
			job := e.newJob(spec)
			tNew := time.Since(t0)
			r2 := e.start(job)
			r2.Start = t0
			firstEl := r2.waitKeyed(1, 5*time.Minute)
			tFirst := time.Now()
			resFirst := residentShare(b, spec.State.Dir)
			tick0 := spec.State.Memory.Tickers()
			l0First := spec.State.Memory.SumProperty("rocksdb.num-files-at-level0")
			pendingFirst := spec.State.Memory.SumProperty("rocksdb.estimate-pending-compaction-bytes")
			cpu0, gc0 := cpuSeconds(os.Getpid()), gcCPUSeconds()
			low0, high0 := threadCPUSeconds(os.Getpid(), "rocksdb:low"), threadCPUSeconds(os.Getpid(), "rocksdb:high")
			perf := perfRecord(b, os.Getpid()) // the replay, when EDDY_BENCH_PERF is set
			r2.waitKeyed(tail, 20*time.Minute)
			replayEl := time.Since(tFirst)
			cpu, gc := cpuSeconds(os.Getpid())-cpu0, gcCPUSeconds()-gc0
			low := threadCPUSeconds(os.Getpid(), "rocksdb:low") - low0
			high := threadCPUSeconds(os.Getpid(), "rocksdb:high") - high0
			perf()
			tick1 := spec.State.Memory.Tickers()
			resEnd := residentShare(b, spec.State.Dir)
			peak := sampler.end()
			prof()
			b.StopTimer()
			rss := peakRSSMiB(b, "self")
			restores := e.times.take(msgRestoredCheckpoint)
			r2.stop()
			b.ReportMetric(float64(firstEl.Microseconds())/1000, "recovery_ms")
			b.ReportMetric(quantile(restores, 1), "open_db_ms")
			b.ReportMetric(float64(tNew.Microseconds())/1000, "newjob_ms")
			metric(b, float64(tail-1)/replayEl.Seconds(), "replay_readings/s")
			metric(b, cpu*1e6/float64(tail-1), "replay_cpu_us/reading")
			b.ReportMetric(100*gc/cpu, "replay_gc_cpu_pct")
			b.ReportMetric(low*1e6/float64(tail-1), "compact_cpu_us/reading")
			b.ReportMetric(high*1e6/float64(tail-1), "flush_cpu_us/reading")
			b.ReportMetric(float64(l0First), "l0_files_first")
			b.ReportMetric(mib(pendingFirst), "pending_compaction_MiB_first")
			metric(b, mib(md.StateSize()), "state_MiB")
			b.ReportMetric(float64(len(md.Tasks)), "tasks")
			metric(b, rss, "peak_rss_MiB")
			b.ReportMetric(rss-mib(spec.State.Memory.Options().Managed), "over_budget_MiB")
			b.ReportMetric(mib(cold), "cold_MiB")
			b.ReportMetric(100*resFirst, "resident_first_pct")
			b.ReportMetric(100*resEnd, "resident_end_pct")
			perReading := func(name string) float64 { return float64(tick1[name]-tick0[name]) / float64(tail-1) }
			for _, t := range []struct{ ticker, unit string }{
				{"rocksdb.block.cache.index.miss", "index_miss/reading"},
				{"rocksdb.block.cache.filter.miss", "filter_miss/reading"},
				{"rocksdb.block.cache.data.miss", "data_miss/reading"},
				{"rocksdb.block.cache.data.hit", "data_hit/reading"},
				{"rocksdb.bloom.filter.useful", "filter_useful/reading"},
				{"rocksdb.number.multiget.keys.read", "multiget_keys/reading"},
			} {
				b.ReportMetric(perReading(t.ticker), t.unit)
			}
			b.ReportMetric(perReading("rocksdb.block.cache.data.bytes.insert")+perReading("rocksdb.block.cache.index.bytes.insert")+
				perReading("rocksdb.block.cache.filter.bytes.insert"), "cache_insert_B/reading")
			// RocksDB's background work during the replay: what compactions
			// read and wrote and what memtable flushes wrote, per reading.
			for _, t := range []struct{ ticker, unit string }{
				{"rocksdb.compact.read.bytes", "compact_read_B/reading"},
				{"rocksdb.compact.write.bytes", "compact_write_B/reading"},
				{"rocksdb.flush.write.bytes", "flush_write_B/reading"},
			} {
				b.ReportMetric(perReading(t.ticker), t.unit)
			}
			peak.report(b, "")
			reportLoad(b)
			b.Logf("restored chk-%d (%s) in %v to first record", md.ID, filepath.Base(e.store.CheckpointDir(md.ID)), firstEl)
		})
	}
}
