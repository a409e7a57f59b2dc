package sink

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/eddy-stream/eddy/storage/checkpoint"
	"github.com/eddy-stream/eddy/storage/datadir"
	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// Spool is the on-disk queue of one sink's output of completed
// checkpoints (exactly-once mode), waiting to be published. It is an
// ingest log (storage/ingestlog: segments, CRC frames, torn-tail
// recovery) whose records carry output, plus a small file holding how far
// the sink confirmed it. The format is described in docs/data-dir.md.
//
// When checkpoint N completes, the output of every staged epoch <= N is
// appended as one batch closed by a mark record for N, and fsynced; only
// then is it dropped from the stagers, so a snapshot carries only output
// not yet spooled. The release loop publishes whole batches from the
// confirmed position, records the new position (CreateAtomic) and
// front-truncates whole confirmed segments.
//
// Methods may be called from two goroutines: one appending (Append), one
// publishing (Read, Confirm).
type Spool struct {
	opts SpoolOptions
	log  *ingestlog.Log

	mu        sync.Mutex
	confirmed spoolPos // published up to here (durable)
	end       uint64   // offset after the last durable mark
	endEpoch  int64    // epoch of that mark, -1: none
	appended  int64    // newest epoch appended (maybe not yet durable)
	spooled   int64    // newest epoch durably spooled or published
}

// SpoolOptions configure a Spool.
type SpoolOptions struct {
	Dir     string // the spool's directory, one per sink
	MaxSize int64  // Full once the segments take this many bytes
	// SegmentSize of the spool's log; 0: MaxSize/8 within 64 KiB … 64 MiB,
	// so that draining frees space in steps.
	SegmentSize int64
	FS          fileutil.FS
	Logger      *slog.Logger
}

// spoolPos is the content of the confirmed file: Offset is the first
// record not yet published, Epoch the newest checkpoint whose output is
// all published (-1: none).
type spoolPos = checkpoint.SpoolPos

const (
	spoolOutput = 0
	spoolMark   = 1

	// ConfirmedFile is the name of the file in a spool directory that
	// holds the confirmed position.
	ConfirmedFile = datadir.SpoolConfirmedFile
	spoolLogDir   = datadir.SpoolLogDir
)

func (o SpoolOptions) logOptions() ingestlog.Options {
	seg := o.SegmentSize
	if seg <= 0 {
		seg = min(max(o.MaxSize/8, 64<<10), 4<<20) // small: the uploader re-sends the growing active one
	}
	return ingestlog.Options{
		Dir:         filepath.Join(o.Dir, spoolLogDir),
		SegmentSize: seg,
		MaxSize:     1 << 62, // the spool bounds itself (Full): a batch is never cut in two
		ManualSync:  true,
		Logger:      o.Logger,
		FS:          o.FS,
	}
}

// OpenSpool opens the spool in o.Dir for a job restored from checkpoint
// restored (-1: starting without a checkpoint). It makes the spool agree
// with that checkpoint: everything after the last mark <= restored is
// cut off (a batch cut short by a crash, and output of newer checkpoints,
// which the job computes again), and the confirmed position is kept at or
// below the end. It returns the newest epoch dedupe: every epoch <=
// dedupe the checkpoint still holds staged is in the spool already or
// published, and must not be appended again.
func OpenSpool(o SpoolOptions, restored int64) (s *Spool, dedupe int64, err error) {
	if o.FS == nil {
		o.FS = fileutil.OSFS{Logger: o.Logger}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := fileutil.CreateDirAllFS(o.FS, o.Dir); err != nil {
		return nil, 0, fmt.Errorf("sink: spool %s: %w", o.Dir, err)
	}
	conf := spoolPos{Epoch: -1}
	data, err := fileutil.ReadFileFS(o.FS, filepath.Join(o.Dir, ConfirmedFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		data = nil
	case err != nil:
		return nil, 0, fmt.Errorf("sink: spool %s: %w", o.Dir, err)
	}
	if data != nil {
		if err := json.Unmarshal(data, &conf); err != nil {
			return nil, 0, &fileutil.CorruptionError{Path: filepath.Join(o.Dir, ConfirmedFile), Err: err}
		}
	}
	lo := o.logOptions()
	l, err := ingestlog.Open(lo)
	if err != nil {
		return nil, 0, err
	}
	cut, cutEpoch, err := scanSpool(l, restored)
	if err != nil {
		return nil, 0, errors.Join(err, l.Close())
	}
	if conf.Offset < l.FirstOffset() && data == nil {
		conf.Offset = l.FirstOffset()
	}
	dedupe = min(restored, max(cutEpoch, conf.Epoch))
	if cut < l.NextOffset() {
		o.Logger.Info("cutting sink spool back to the restored checkpoint", "dir", o.Dir, "checkpoint", restored,
			"from_offset", cut, "records", l.NextOffset()-cut)
		if err := l.Close(); err != nil {
			return nil, 0, err
		}
		if err := ingestlog.TruncateBack(lo, cut); err != nil {
			return nil, 0, err
		}
		if l, err = ingestlog.Open(lo); err != nil {
			return nil, 0, err
		}
	}
	// Nothing is appended before the confirmed position is at or below
	// the end: offsets after a cut are used again.
	if conf.Offset > cut {
		conf = spoolPos{Offset: cut, Epoch: restored}
	}
	if conf.Offset < l.FirstOffset() {
		return nil, 0, errors.Join(&fileutil.CorruptionError{Path: filepath.Join(o.Dir, ConfirmedFile),
			Reason: fmt.Sprintf("confirmed offset %d is below the spool's first record %d", conf.Offset, l.FirstOffset())}, l.Close())
	}
	s = &Spool{opts: o, log: l, confirmed: conf, end: cut, endEpoch: cutEpoch, appended: dedupe, spooled: dedupe}
	if err := s.writeConfirmed(conf); err != nil {
		return nil, 0, errors.Join(err, l.Close())
	}
	return s, dedupe, nil
}

// scanSpool returns the offset after the last mark <= upTo (the first
// offset when there is none) and that mark's epoch (-1).
func scanSpool(l *ingestlog.Log, upTo int64) (cut uint64, epoch int64, err error) {
	cut, epoch = l.FirstOffset(), -1
	r, err := l.NewReader(cut)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	var rec ingestlog.Record
	for {
		err := r.Next(&rec)
		if errors.Is(err, ingestlog.ErrNoData) {
			return cut, epoch, nil
		}
		if err != nil {
			return 0, 0, err
		}
		if kind, _, _, err := decodeSpool(&rec); err != nil {
			return 0, 0, err
		} else if kind == spoolMark && rec.Timestamp <= upTo {
			cut, epoch = rec.Offset+1, rec.Timestamp
		}
	}
}

func decodeSpool(rec *ingestlog.Record) (kind byte, id string, payload []byte, err error) {
	p := rec.Payload
	if len(p) == 0 {
		return 0, "", nil, fmt.Errorf("sink: spool record %d is empty", rec.Offset)
	}
	switch p[0] {
	case spoolMark:
		return spoolMark, "", nil, nil
	case spoolOutput:
		n, k := binary.Uvarint(p[1:])
		if k <= 0 || n > uint64(len(p)-1-k) {
			return 0, "", nil, fmt.Errorf("sink: spool record %d: bad id length", rec.Offset)
		}
		return spoolOutput, string(p[1+k : 1+k+int(n)]), p[1+k+int(n):], nil
	}
	return 0, "", nil, fmt.Errorf("sink: spool record %d: unknown kind %d", rec.Offset, p[0])
}

func (s *Spool) writeConfirmed(p spoolPos) error {
	data, _ := json.Marshal(p)
	if err := fileutil.WriteFileAtomicFS(s.opts.FS, filepath.Join(s.opts.Dir, ConfirmedFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("sink: spool %s: record confirmed position: %w", s.opts.Dir, err)
	}
	return nil
}

// Append appends the output of epochs (ascending, all <= upTo) and a mark
// for upTo, and fsyncs. When it fails the caller calls it again with the
// same or a newer upTo (and the epochs up to it): what was appended is
// kept by the log and only synced, epochs it already took are skipped.
func (s *Spool) Append(upTo int64, epochs []Epoch) error {
	if s.log.Broken() != nil {
		// A failed write or fsync: the log (ManualSync, no background
		// retry) recovers only in Sync, and refuses new records until it
		// has. Recover first, or a newer checkpoint's batch would be
		// refused for good.
		if err := s.log.Sync(); err != nil {
			return fmt.Errorf("sink: spool %s: %w", s.opts.Dir, err)
		}
	}
	s.mu.Lock()
	appended := s.appended
	s.mu.Unlock()
	if upTo > appended {
		var rs []ingestlog.Record
		for _, e := range epochs {
			if e.ID <= appended {
				continue // taken by an append whose fsync failed
			}
			for _, o := range e.Outputs {
				p := make([]byte, 0, 1+binary.MaxVarintLen32+len(o.ID)+len(o.Payload))
				p = append(p, spoolOutput)
				p = binary.AppendUvarint(p, uint64(len(o.ID)))
				p = append(append(p, o.ID...), o.Payload...)
				rs = append(rs, ingestlog.Record{Timestamp: e.ID, Topic: o.Topic, Payload: p})
			}
		}
		rs = append(rs, ingestlog.Record{Timestamp: upTo, Payload: []byte{spoolMark}})
		if _, err := s.log.AppendBatch(rs); err != nil {
			return fmt.Errorf("sink: spool %s: %w", s.opts.Dir, err)
		}
		s.mu.Lock()
		s.appended = upTo
		s.mu.Unlock()
	}
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("sink: spool %s: %w", s.opts.Dir, err)
	}
	s.mu.Lock()
	s.end, s.endEpoch, s.spooled = s.log.SyncedOffset(), upTo, upTo
	s.mu.Unlock()
	return nil
}

// Spooled is the newest checkpoint whose output is durably in the spool
// (or published), -1: none.
func (s *Spool) Spooled() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spooled
}

// Size is the bytes the spool's segments take.
func (s *Spool) Size() int64 { return s.log.Size() }

// MaxSize is the configured bound.
func (s *Spool) MaxSize() int64 { return s.opts.MaxSize }

// State is where the spool stands, for a checkpoint's metadata: the
// confirmed position and the end after the newest durable mark.
func (s *Spool) State() checkpoint.SpoolState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return checkpoint.SpoolState{Confirmed: s.confirmed, End: spoolPos{Offset: s.end, Epoch: s.endEpoch}}
}

// Full reports whether the spool has reached its bound and holds output
// the sink has not confirmed: Append may still take a batch (it is never
// refused half way), but the caller holds new output until the sink
// drains it. Confirmed output frees whole segments, the active one last.
func (s *Spool) Full() bool {
	s.mu.Lock()
	pending := s.confirmed.Offset < s.end
	s.mu.Unlock()
	return pending && s.log.Size() >= s.opts.MaxSize
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.opts.Dir }

// Batch is output read from the spool: whole batches, up to mark UpTo.
type Batch struct {
	Outputs []Output
	UpTo    int64  // newest mark in the batch, -1: nothing to publish
	Next    uint64 // offset after that mark: the position once confirmed
}

// Read returns the output after the confirmed position up to and
// including whole batches, stopping after the first mark at which the
// output holds maxBytes of payload.
func (s *Spool) Read(maxBytes int) (Batch, error) {
	s.mu.Lock()
	from, end := s.confirmed.Offset, s.end
	s.mu.Unlock()
	b := Batch{UpTo: -1, Next: from}
	if from >= end {
		return b, nil
	}
	r, err := s.log.NewReader(from)
	if err != nil {
		return b, fmt.Errorf("sink: spool %s: %w", s.opts.Dir, err)
	}
	defer r.Close()
	var pending []Output
	size := 0
	var rec ingestlog.Record
	for off := from; off < end; off++ {
		if err := r.Next(&rec); err != nil {
			return Batch{UpTo: -1, Next: from}, fmt.Errorf("sink: spool %s: %w", s.opts.Dir, err)
		}
		kind, id, payload, err := decodeSpool(&rec)
		if err != nil {
			return Batch{UpTo: -1, Next: from}, fmt.Errorf("sink: spool %s: %w", s.opts.Dir, err)
		}
		if kind == spoolMark {
			b.Outputs = append(b.Outputs, pending...)
			pending = pending[:0]
			b.UpTo, b.Next = rec.Timestamp, rec.Offset+1
			if size >= maxBytes {
				break
			}
			continue
		}
		pending = append(pending, Output{Topic: rec.Topic, ID: id, Payload: append([]byte(nil), payload...)})
		size += len(payload)
	}
	return b, nil
}

// Confirm records that the sink has everything before b.Next (durably,
// before it returns) and removes whole segments below it.
func (s *Spool) Confirm(b Batch) error {
	if b.UpTo < 0 {
		return nil
	}
	p := spoolPos{Offset: b.Next, Epoch: b.UpTo}
	if err := s.writeConfirmed(p); err != nil {
		return err
	}
	s.mu.Lock()
	s.confirmed = p
	s.mu.Unlock()
	if err := s.log.TruncateFront(b.Next); err != nil {
		return fmt.Errorf("sink: spool %s: %w", s.opts.Dir, err)
	}
	return nil
}

// Confirmed is the newest checkpoint whose output the sink confirmed
// from this spool, -1: none.
func (s *Spool) Confirmed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confirmed.Epoch
}

// Close closes the spool's log.
func (s *Spool) Close() error { return s.log.Close() }
