package bench

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/storage/state"
)

// memSample is the test process's memory at one instant, split by owner.
type memSample struct {
	rss    int64 // VmRSS
	file   int64 // of rss, RssFile: mapped files (the binary, shared libraries)
	goMem  int64 // Go runtime: mapped minus released to the OS
	goHeap int64 // of goMem, live and not-yet-swept heap objects
	goLive int64 // heap objects marked live by the last collection
	rocks  state.Usage
	malloc state.MallocStats
}

// other is what neither Go nor RocksDB's own figures account for: malloc
// overhead and fragmentation, RocksDB's allocations outside the memtables,
// block cache and table readers (iterators, compaction buffers, the
// MultiGet scratch), the binary (file) and thread stacks.
func (s memSample) other() int64 { return s.rss - s.goMem - s.rocks.Total() }

var goMemMetrics = []metrics.Sample{
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/gc/heap/live:bytes"},
}

// gcCPUSeconds is the CPU time the Go collector has used so far
// (runtime/metrics' estimate: mark workers, assists, idle marking).
func gcCPUSeconds() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64()
}

func sampleMem(m *state.Memory) memSample {
	ms := append([]metrics.Sample(nil), goMemMetrics...)
	metrics.Read(ms)
	kb, _ := procStatus("self", "VmRSS")
	fkb, _ := procStatus("self", "RssFile")
	return memSample{
		rss:    kb << 10,
		file:   fkb << 10,
		goMem:  int64(ms[0].Value.Uint64() - ms[1].Value.Uint64()),
		goHeap: int64(ms[2].Value.Uint64()),
		goLive: int64(ms[3].Value.Uint64()),
		rocks:  m.Usage(),
		malloc: state.Malloc(),
	}
}

// memSampler samples the process every 200 ms and keeps the sample of the
// highest RSS: where the memory is at (about) the peak. It reads VmRSS
// first and takes the whole sample only at a new peak: glibc's mallinfo2,
// which this sampled before eddy used jemalloc, walked every free chunk of
// the arenas holding their locks, 1.9 % of the (i) replay's CPU at every
// sample (perf, 2026-12-03).
type memSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak memSample
}

// peakHeapProfile is the path of the heap profile a memSampler writes at
// the highest RSS it samples, $EDDY_BENCH_PROFILE/<benchmark><suffix>.peak.heap.prof,
// or "" when EDDY_BENCH_PROFILE is not set.
func peakHeapProfile(b *testing.B, suffix string) string {
	dir := os.Getenv("EDDY_BENCH_PROFILE")
	if dir == "" {
		return ""
	}
	return benchFile(dir, b, suffix+".peak.heap.prof")
}

// writeHeapProfile writes the heap profile (in-use figures as of the last
// collection) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = pprof.Lookup("heap").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// startMemSampler samples m's process; with heapProfile not "" it also
// writes a heap profile there at each new RSS peak (at most one every 2 s,
// the last one standing).
func startMemSampler(m *state.Memory, heapProfile string) *memSampler {
	s := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		var lastProfile time.Time
		for {
			kb, _ := procStatus("self", "VmRSS")
			s.mu.Lock()
			peak := s.peak.rss
			s.mu.Unlock()
			if kb<<10 > peak {
				c := sampleMem(m)
				s.mu.Lock()
				newPeak := c.rss > s.peak.rss
				if newPeak {
					s.peak = c
				}
				s.mu.Unlock()
				if newPeak && heapProfile != "" && time.Since(lastProfile) >= 2*time.Second {
					lastProfile = time.Now()
					if err := writeHeapProfile(heapProfile); err != nil {
						heapProfile = "" // write no more
					}
				}
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// end stops the sampler and returns the peak sample.
func (s *memSampler) end() memSample {
	close(s.stop)
	<-s.done
	return s.peak
}

// report reports the breakdown of the peak sample with the given prefix.
func (p memSample) report(b *testing.B, prefix string) {
	b.ReportMetric(mib(p.rss), prefix+"sampled_rss_MiB")
	b.ReportMetric(mib(p.file), prefix+"file_MiB")
	b.ReportMetric(mib(p.goMem), prefix+"go_MiB")
	b.ReportMetric(mib(p.goHeap), prefix+"go_heap_objects_MiB")
	b.ReportMetric(mib(p.goLive), prefix+"go_heap_live_MiB")
	b.ReportMetric(mib(p.rocks.Memtables), prefix+"memtables_MiB")
	b.ReportMetric(mib(p.rocks.BlockCache), prefix+"block_cache_MiB")
	b.ReportMetric(mib(p.rocks.Pinned), prefix+"pinned_MiB")
	b.ReportMetric(mib(p.rocks.TableReaders), prefix+"table_readers_MiB")
	b.ReportMetric(mib(p.other()), prefix+"other_MiB")
	b.ReportMetric(mib(p.malloc.InUse), prefix+"malloc_in_use_MiB")
	b.ReportMetric(mib(p.malloc.Free), prefix+"malloc_free_MiB")
}

// residentShare is the share of the bytes of the SST files under dir that
// are in the page cache (mincore).
func residentShare(b *testing.B, dir string) float64 {
	b.Helper()
	var total, res int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasSuffix(path, ".sst") {
			return err
		}
		r, n, err := state.Resident(path)
		res, total = res+r, total+n
		return err
	})
	if err != nil {
		b.Logf("page cache residency of %s: %v", dir, err)
		return 0
	}
	if total == 0 {
		return 0
	}
	return float64(res) / float64(total)
}
