package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sync"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

const ledgerVersion = 1

// ledger is what the uploader knows the remote holds, kept durably in
// data_dir/upload/remote.json (datadir.Layout.UploadRecord; its format is
// in docs/data-dir.md, "upload record"). It is a cache: the remote is the
// truth, and reconcile rebuilds the ledger from a listing when the
// uploader starts. It is written atomically (fileutil) after every remote
// commit, retention and sweep.
type ledger struct {
	Version int `json:"version"`
	// Remote names the store and appliance the ledger describes; a ledger
	// of another remote is discarded.
	Remote string `json:"remote"`
	// Objects maps a key relative to the appliance directory to what is
	// stored there.
	Objects map[string]ledgerObject `json:"objects"`
	// Committed maps the id of every remote checkpoint whose _metadata is
	// stored to what it references: the shared-state registry.
	Committed map[int64]ledgerCheckpoint `json:"committed"`
	// Conflict, when set, stops uploads: the remote holds a newer history
	// than this data dir (see reconcile).
	Conflict string `json:"conflict,omitempty"`
	// UnverifiedStart: this data dir started from empty state without
	// having been able to ask the remote for checkpoints (MarkUnverifiedStart).
	// The first reconcile then treats any remote checkpoint as another
	// history.
	UnverifiedStart bool `json:"unverified_start,omitempty"`
}

// ledgerObject is one remote object.
type ledgerObject struct {
	Size int64 `json:"size"` // stored size
	// CRC32C and Encoding describe the content when Known: the object was
	// uploaded by this data dir or named by a committed manifest. Objects
	// seen only in a listing are not Known and are never reused for a
	// private (non-SST) file; a shared object's name carries its size and
	// checksum, so a listing is enough for it.
	CRC32C   uint32 `json:"crc32c,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	Known    bool   `json:"known,omitempty"`
}

// ledgerCheckpoint is one committed remote checkpoint.
type ledgerCheckpoint struct {
	TriggerTimestamp   int64    `json:"trigger_timestamp"`
	CompletedTimestamp int64    `json:"completed_timestamp"`
	UploadedTimestamp  int64    `json:"uploaded_timestamp"`
	Keys               []string `json:"keys"`
}

func newLedger(remote string) *ledger {
	return &ledger{Version: ledgerVersion, Remote: remote, Objects: map[string]ledgerObject{}, Committed: map[int64]ledgerCheckpoint{}}
}

// loadLedger reads the ledger at path. A missing, unreadable or foreign
// ledger gives an empty one (reconcile fills it from the remote).
func loadLedger(fsys fileutil.FS, path, remote string) (*ledger, error) {
	data, err := fileutil.ReadFileFS(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		return newLedger(remote), nil
	}
	if err != nil {
		return nil, fmt.Errorf("upload: read %s: %w", path, err)
	}
	l := newLedger(remote)
	if err := json.Unmarshal(data, l); err != nil || l.Version != ledgerVersion || l.Remote != remote {
		return newLedger(remote), nil
	}
	if l.Objects == nil {
		l.Objects = map[string]ledgerObject{}
	}
	if l.Committed == nil {
		l.Committed = map[int64]ledgerCheckpoint{}
	}
	return l, nil
}

func (l *ledger) save(fsys fileutil.FS, path string) error {
	data, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("upload: encode ledger: %w", err)
	}
	if err := fileutil.WriteFileAtomicFS(fsys, path, data, 0o644); err != nil {
		return fmt.Errorf("upload: write %s: %w", path, err)
	}
	return nil
}

func (l *ledger) clone() *ledger {
	c := *l
	c.Objects = maps.Clone(l.Objects)
	c.Committed = maps.Clone(l.Committed)
	return &c
}

// committedIDs returns the committed checkpoint ids, ascending.
func (l *ledger) committedIDs() []int64 {
	return slices.Sorted(maps.Keys(l.Committed))
}

func (l *ledger) newest() int64 {
	var n int64
	for id := range l.Committed {
		n = max(n, id)
	}
	return n
}

// referenced returns every key a committed checkpoint references, plus
// the committed _metadata objects themselves.
func (l *ledger) referenced() map[string]bool {
	refs := map[string]bool{}
	for id, c := range l.Committed {
		refs[MetadataRel(id)] = true
		for _, k := range c.Keys {
			refs[k] = true
		}
	}
	return refs
}

// ledgerState is the uploader's ledger in memory under its own lock, the
// file it is saved to, and the notification of what is committed. Only
// the run loop (and the uploads it runs) changes the ledger; others read
// it. Lock order: queue.mu before ledgerState.mu, never the reverse.
type ledgerState struct {
	fs   fileutil.FS
	path string

	mu         sync.Mutex
	l          *ledger
	reconciled bool
	settled    int64         // the newest checkpoint committed whose retention ran
	changed    chan struct{} // closed and replaced by settle
}

func newLedgerState(fsys fileutil.FS, path string, l *ledger) *ledgerState {
	return &ledgerState{fs: fsys, path: path, l: l, changed: make(chan struct{})}
}

// with runs f with the ledger locked.
func (s *ledgerState) with(f func(l *ledger)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.l)
}

func (s *ledgerState) snapshot() *ledger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.l.clone()
}

func (s *ledgerState) newest() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.l.newest()
}

func (s *ledgerState) committed(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.l.Committed[id]
	return ok
}

// save writes the current ledger.
func (s *ledgerState) save() error { return s.snapshot().save(s.fs, s.path) }

// markUnverifiedStart sets UnverifiedStart durably.
func (s *ledgerState) markUnverifiedStart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l.UnverifiedStart {
		return nil
	}
	s.l.UnverifiedStart = true
	return s.l.save(s.fs, s.path)
}

func (s *ledgerState) isReconciled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reconciled
}

// replace installs the ledger reconcile rebuilt (and saved).
func (s *ledgerState) replace(l *ledger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.l = l
	s.reconciled = true
	s.settled = max(s.settled, l.newest())
}

// settle records that checkpoint id was committed and its retention ran,
// and wakes wait.
func (s *ledgerState) settle(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settled = id
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait waits until checkpoint id or a newer one is settled, or ctx is done.
func (s *ledgerState) wait(ctx context.Context, id int64) error {
	for {
		s.mu.Lock()
		ok, ch := s.settled >= id, s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
