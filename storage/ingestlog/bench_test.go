package ingestlog

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

const benchPayload = 150

func benchOptions(o *Options) {
	o.SyncInterval, o.ManualSync, o.MaxSize = 2*time.Millisecond, false, 1<<40
}

// BenchmarkAppend appends 150-byte messages with group commit running,
// then syncs: the rate at which a source can take in messages durably.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name  string
		batch int
	}{{"single", 1}, {"batch64", 64}} {
		b.Run(bc.name, func(b *testing.B) {
			l := openLog(b, b.TempDir(), benchOptions)
			var syncs atomic.Int64
			l.OnSync(func(uint64) { syncs.Add(1) })
			rs := make([]Record, bc.batch)
			for i := range rs {
				rs[i] = testRecord(i, benchPayload)
			}
			b.SetBytes(int64(len(appendRecord(nil, &rs[0]))))
			b.ResetTimer()
			for n := 0; n < b.N; n += bc.batch {
				var err error
				if bc.batch == 1 {
					_, err = l.Append(&rs[0])
				} else {
					_, err = l.AppendBatch(rs)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := l.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(l.NextOffset())/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(l.NextOffset())/float64(syncs.Load()), "records/fsync")
		})
	}
}

// BenchmarkReader reads 500k durable 150-byte messages per iteration.
func BenchmarkReader(b *testing.B) {
	const n = 500_000
	l := openLog(b, b.TempDir(), benchOptions)
	rs := make([]Record, 1000)
	for i := 0; i < n; i += len(rs) {
		for j := range rs {
			rs[j] = testRecord(i+j, benchPayload)
		}
		if _, err := l.AppendBatch(rs); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(l.Size())
	b.ResetTimer()
	var rec Record
	for b.Loop() {
		r, err := l.NewReader(0)
		if err != nil {
			b.Fatal(err)
		}
		read := 0
		for ; ; read++ {
			if err := r.Next(&rec); err != nil {
				if !errors.Is(err, ErrNoData) {
					b.Fatal(err)
				}
				break
			}
		}
		r.Close()
		if read != n {
			b.Fatalf("read %d records, want %d", read, n)
		}
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "records/s")
}
