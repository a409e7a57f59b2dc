// Package upload ships completed local checkpoints to remote storage and
// brings them back: the remote stores (S3-compatible through minio-go, a
// mounted directory through file://, and an in-memory one for tests)
// behind one narrow Store interface; the Uploader, which sends the newest
// checkpoint's new files whenever the uplink is up; and Download, which
// turns a remote checkpoint back into a local one; and Recovery, which
// decides between local and remote at a start. The remote layout is
// described in docs/remote-layout.md.
//
// # Remote layout
//
//	<prefix>/<appliance>/shared/<task>/<stem>-<size>-<crc32c>.sst   immutable SSTs
//	<prefix>/<appliance>/chk-<N>/<task>/<file>                      everything else
//	<prefix>/<appliance>/shared/_spool/<sink>/<base>-<size>-<crc32c>.seg  sink spool segments
//	<prefix>/<appliance>/chk-<N>/_metadata                          the commit point
//
// SSTs are shared between checkpoints and uploaded once. Their object
// names carry size and CRC32C: RocksDB file numbers are unique within one
// DB's history, but a DB restored from an older checkpoint renumbers from
// that checkpoint's MANIFEST and may give a number to a different file.
// Non-SST files (MANIFEST, CURRENT, OPTIONS, the task state file, full
// snapshots) change from one checkpoint to the next and are stored per
// checkpoint, snappy-compressed with upload.compression: snappy. The
// part of each sink's spool a checkpoint needs (output spooled and not
// yet confirmed, exactly_once) is stored as segment files named by size
// and CRC32C, shared like SSTs (spool.go); Download rebuilds the spools.
//
// # Invariants
//
//  1. A remote checkpoint exists iff chk-N/_metadata exists. The manifest
//     is Put only after every object it names is stored, so a remote
//     _metadata never names a missing object. Retention deletes a
//     checkpoint's _metadata before any object; reconcile uncommits (deletes
//     the _metadata of) a checkpoint found naming a missing object.
//  2. One goroutine (the run loop) writes to the remote: uploads, manifest
//     commits, retention and the orphan sweep never overlap, so the sweep
//     and retention cannot delete an object an upload is about to
//     reference. Two eddy processes must not share an appliance id.
//  3. Only the newest offered checkpoint is kept; an older one waiting is
//     skipped. Protect keeps the waiting and the uploading checkpoint from
//     local pruning, so their files are there to read.
//  4. Every file is checked on the way out against the CRC32C and size in
//     the local _metadata (a mismatch drops the checkpoint, and the object
//     is deleted again), and on the way back in by Download.
//  5. A failure never reaches processing: Offer never blocks, and the
//     loop retries with exponential backoff and jitter, capped, forever.
//
// # What the remote holds: the ledger
//
// The uploader keeps what it knows the remote holds (objects with size and
// content, committed checkpoints with the keys each references: Flink's
// SharedStateRegistry) in its ledger, data_dir/upload/remote.json
// (docs/data-dir.md, "upload record"), written atomically after each
// commit, retention and sweep. The ledger is a cache: at start
// the loop lists the remote and rebuilds it (objects uploaded by a
// process killed before it saved the ledger are found and reused; the
// manifests of checkpoints the ledger does not know are read). A file is
// sent only if the remote lacks it: an SST whose object exists with its
// size, or a non-SST file whose object was stored from the same content
// and encoding.
//
// # Link
//
// The link is up after any request that got an answer and down after one
// that failed. While down, the loop sleeps a backoff that doubles from
// RetryInterval to MaxRetryInterval (with jitter), then, with Probe, tests
// the link with one Stat; it is not woken by new checkpoints, so an
// outage costs one small request per period however many checkpoints
// complete. When the link answers, the newest checkpoint is uploaded at
// once: only the files it needs, which after an outage are the SSTs
// written since the last upload.
//
// # Retention and orphans
//
// After a commit, checkpoints beyond NumRetained are deleted (their
// _metadata first), then their private objects and the shared objects
// that no retained checkpoint references. Objects that no committed
// checkpoint references — left by an upload cut short by a crash or a
// failure, superseded before its commit, or by retention that failed half
// way — are removed by a sweep every SweepInterval once older than
// OrphanGrace (judged by the remote's timestamps). The file store's
// *.tmp leftovers are swept the same way.
//
// # Recovery
//
// Recovery (recovery.go) is the one place that decides what a start
// restores: the newest local checkpoint, or the remote's newest when there
// is none (or checkpointing.local_recovery is false), and that keeps the
// restored marker, data_dir/restored-from-remote.json, naming the sources
// whose ingest log was lost with the old disk. `eddy run` calls Recover,
// `eddy restore` calls Restore, which also resets the ledger. Download
// fetches a remote checkpoint into the local checkpoint store through the
// store's own Begin/Commit: files in parallel into chk-N/, each written
// atomically and committed only once its size and CRC32C match, then
// Commit writes the local _metadata. The ordinary local restore then
// hard-links it into working RocksDB instances. With Latest, a damaged
// remote checkpoint makes Download fall back to the previous one. A failed
// download keeps the files it committed, and the next attempt fetches only
// those missing or not matching. A start without a local checkpoint waits
// for a remote that does not answer (RestoreWait) unless told to give up
// after a bound (RestoreEmptyIfUnreachable); a remote checkpoint whose
// source offsets the ingest log no longer holds is never restored over a
// local one.
//
// # Conflicts
//
// A data dir that never uploaded (no ledger) and whose newest checkpoint
// is older than the remote's newest was started empty while the remote
// holds a newer history (a replacement box that could not reach the remote
// at its first start). Its uploads would overwrite that history and its
// retention delete it, so the uploader refuses, says so in Stats.Conflict,
// and persists the refusal until `eddy restore` (or the removal of the
// ledger) settles it.
package upload
