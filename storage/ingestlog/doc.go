// Package ingestlog is eddy's durable ingest log: a segmented, CRC-checked,
// append-only log of the messages one MQTT source received. A message is
// appended, made durable by a group-commit fsync, and only then
// acknowledged to the broker (OnSync); the pipeline reads the log by
// offset, and after a crash replays it from the offsets of the last
// checkpoint. The on-disk format is described in docs/ingest-log.md.
//
// # Invariants
//
//   - Offsets are dense: the first record ever has offset 0, each record
//     the next one. TruncateFront removes old segments but never changes
//     an offset, and a reopened log continues where it left off.
//   - SyncedOffset only grows. Every record below it has been fsynced,
//     together with the directory entry of its segment, and survives a
//     crash. Readers see exactly those records, so processing never runs
//     ahead of what a crash would leave.
//   - Every segment but the last (the active one) is complete and was
//     fsynced before the next one was created. Damage in it is corruption.
//   - Damage at the end of the last segment with no intact record after
//     it is a torn write: Open cuts it off and logs it. Any other damage,
//     or a gap in offsets between segments, is a *fileutil.CorruptionError
//     naming the file and byte offset; nothing is skipped silently.
//   - Data is never dropped: at MaxSize Append fails with ErrFull until
//     TruncateFront frees whole segments.
//   - A record Append accepted is never lost to a failed write or fsync:
//     the Log keeps every record not yet durable in memory. After a
//     failure Append refuses records (ErrUnavailable; Paused reports
//     PauseError) and the next Sync recovers: it closes every file, never
//     fsyncing a handle that failed (the kernel may have dropped its dirty
//     pages and would report success), removes segments created after the
//     durable one, reopens that one from disk, checks its records up to
//     the durable end and cuts it there, and writes the kept records
//     again. Until that succeeds (the disk has room again) the records
//     after SyncedOffset stay unacknowledged. Only corruption found in the
//     durable part is sticky.
//   - Pause(reason) makes Append refuse records (ErrUnavailable) for a
//     reason of the caller's, e.g. a disk below its free-space budget;
//     syncing, reading and truncation go on.
//
// # Concurrency
//
// Append, AppendBatch and every other Log method may be called from any
// goroutine. With SyncInterval > 0 a group-commit goroutine fsyncs at most
// once per interval while there are unsynced appends; with SyncInterval 0
// every Append fsyncs before it returns (appends waiting meanwhile share
// the next fsync). The same goroutine retries recovery every
// RetryInterval after a failure. ManualSync leaves both to Sync. Close
// stops the goroutine.
package ingestlog
