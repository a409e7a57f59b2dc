package pipeline

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// TEMPORARY instrumentation (h2-ttfb): EDDY_CPTRACE=file writes one line per
// checkpoint event.
var cpTraceMu sync.Mutex
var cpTraceF *os.File

func init() {
	if p := os.Getenv("EDDY_CPTRACE"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			cpTraceF = f
		}
	}
}

func cptrace(id int64, ts int64, who, what string, extra ...any) {
	if cpTraceF == nil {
		return
	}
	now := time.Now()
	cpTraceMu.Lock()
	defer cpTraceMu.Unlock()
	fmt.Fprintf(cpTraceF, "%d %d %+d %s %s %s\n", now.UnixMicro(), id, now.UnixMilli()-ts, who, what, fmt.Sprint(extra...))
}

func (op *windowOp) processBatchTr(evs []event, stop func() error, name string) error {
	t0 := time.Now()
	if err := op.prefetch(evs); err != nil {
		return err
	}
	t1 := time.Now()
	if err := op.addBatch(evs, stop); err != nil {
		return err
	}
	t2 := time.Now()
	err := op.maybeEvict()
	if d := time.Since(t0); d > 10*time.Millisecond {
		cptrace(0, 0, name, "slow-op", "prefetch-us=", t1.Sub(t0).Microseconds(), " add-us=", t2.Sub(t1).Microseconds(), " evict-us=", time.Since(t2).Microseconds())
	}
	return err
}
