// Package failpoint lets crash tests kill the real binary at a named step of
// a durable protocol, the way etcd uses gofail: the environment variable
// EDDY_FAILPOINTS lists name=N pairs (comma-separated) and the process
// SIGKILLs itself on the N-th time it passes that step. Without the variable
// Hit costs one atomic load.
package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Failpoints in eddy.
const (
	CheckpointSync  = "checkpoint-sync"   // a keyed task, right after its native RocksDB checkpoint
	AfterMetadata   = "after-metadata"    // the coordinator, after _metadata is durable, before publishing
	MidPublish      = "mid-publish"       // the publisher, after handing some staged output to a sink
	BeforeIngestAck = "before-ingest-ack" // ingest, after an fsync, before the PUBACKs
	SpoolDownload   = "spool-download"    // a remote restore, after fetching one spool segment
)

var (
	enabled atomic.Bool
	mu      sync.Mutex
	left    map[string]int
)

func init() { Parse(os.Getenv("EDDY_FAILPOINTS")) }

// Parse sets the failpoints from a spec like "after-metadata=3,mid-publish=1".
func Parse(spec string) {
	mu.Lock()
	defer mu.Unlock()
	left = map[string]int{}
	for _, kv := range strings.Split(spec, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			continue
		}
		if c, err := strconv.Atoi(n); err == nil && c > 0 {
			left[name] = c
		}
	}
	enabled.Store(len(left) > 0)
}

// Hit kills the process if name's countdown reaches zero.
func Hit(name string) {
	if !enabled.Load() {
		return
	}
	mu.Lock()
	c, ok := left[name]
	if ok {
		c--
		left[name] = c
	}
	mu.Unlock()
	if ok && c == 0 {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // never returns
	}
}
