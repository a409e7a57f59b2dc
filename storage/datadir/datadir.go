// Package datadir names every path under eddy's data_dir, so that the
// daemon, the uploader, recovery and the command line agree on one layout
// (docs/data-dir.md is its reference).
package datadir

import "path/filepath"

// Layout is the layout of one data_dir.
type Layout struct {
	Root string
}

// New returns the layout rooted at root.
func New(root string) Layout { return Layout{Root: root} }

// Lock is the flock file held by the running eddy (and by eddy restore).
func (l Layout) Lock() string { return filepath.Join(l.Root, "LOCK") }

// Reserve is the disk reserve (disk.reserve): a preallocated file whose
// space is given back for a checkpoint or a restore on a full disk.
func (l Layout) Reserve() string { return filepath.Join(l.Root, "_reserve") }

// IngestRoot holds one ingest log per source.
func (l Layout) IngestRoot() string { return filepath.Join(l.Root, "ingest") }

// Ingest is the ingest log of one source.
func (l Layout) Ingest(source string) string { return filepath.Join(l.IngestRoot(), source) }

// SpoolRoot holds one spool per sink (exactly_once mode).
func (l Layout) SpoolRoot() string { return filepath.Join(l.Root, "spool") }

// Spool is the spool of one sink: the output of completed checkpoints
// waiting for it (see docs/data-dir.md).
func (l Layout) Spool(sink string) string { return filepath.Join(l.SpoolRoot(), sink) }

// Names inside a spool directory (pipeline/sink.Spool).
const (
	SpoolLogDir        = "log"            // the spool's ingest-log segments
	SpoolConfirmedFile = "confirmed.json" // how far the sink confirmed it
)

// SpoolDownload is where a download from the remote assembles the spool
// of one sink before moving it to Spool(sink).
func (l Layout) SpoolDownload(sink string) string {
	return filepath.Join(l.Upload(), "spool", sink)
}

// State holds the working RocksDB instances, state/<stage>-<i>/.
func (l Layout) State() string { return filepath.Join(l.Root, "state") }

// Checkpoints holds the local checkpoint store, checkpoints/chk-<N>/.
func (l Layout) Checkpoints() string { return filepath.Join(l.Root, "checkpoints") }

// Upload holds the uploader's durable record.
func (l Layout) Upload() string { return filepath.Join(l.Root, "upload") }

// UploadRecord is the uploader's record of what the remote holds.
func (l Layout) UploadRecord() string { return filepath.Join(l.Upload(), "remote.json") }

// RestoredMarker records that state was restored from the remote onto an
// ingest log that no longer held the checkpoint's offsets.
func (l Layout) RestoredMarker() string {
	return filepath.Join(l.Upload(), "restored-from-remote.json")
}

// Savepoints holds the savepoints, savepoints/<name>/; checkpoint
// retention never touches it.
func (l Layout) Savepoints() string { return filepath.Join(l.Root, "savepoints") }
