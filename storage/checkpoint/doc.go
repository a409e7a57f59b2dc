// Package checkpoint is eddy's local checkpoint store: the directory
// checkpoints/ under the data dir, holding one directory per checkpoint.
//
//	checkpoints/
//	  chk-7/
//	    per_device_minute-0/   native RocksDB checkpoint (hard links) + _task
//	    per_device_minute-1/
//	    source-readings/       _task only
//	    _metadata              written last: the commit point
//	    _published             the sinks that confirmed checkpoint 7's staged output
//	  chk-8/                   in progress: no _metadata yet
//	  chk-5.broken/            failed verification, kept for a person
//
// The on-disk format is described in docs/checkpoint-format.md.
//
// # Invariants
//
//  1. A checkpoint exists if and only if chk-N/_metadata exists. The
//     coordinator calls Begin, the tasks fill chk-N/<task>/, and Commit
//     writes _metadata as the very last step (tmp, fsync, rename, fsync
//     dir). Everything else in a chk-N without _metadata is garbage: Open
//     deletes it, Completed never lists it.
//  2. Before Commit writes _metadata, every file it lists is present with
//     its recorded size, every task directory holds exactly the listed
//     files, and the task and checkpoint directories are fsynced. The
//     files' data must already be durable: RocksDB's checkpoint fsyncs the
//     files it copies and hard-links SSTs that were fsynced when written;
//     WriteTaskState fsyncs the task state file.
//  3. _metadata carries a CRC32C of its content and a CRC32C and size for
//     every file of the checkpoint. Load checks the former, Verify the
//     latter. A checkpoint that fails either is never restored: Latest
//     renames it chk-N.broken (never deletes it) and falls back to the
//     next older one.
//  4. A completed checkpoint is removed by renaming chk-N to a *.tmp name
//     first, so a crash in the middle of the removal never leaves a
//     _metadata that names missing files. Open removes *.tmp leftovers.
//  5. Nothing in this package rewrites a file in place: _metadata,
//     _task is written once, atomically; _published is rewritten atomically as each sink confirms.
//  6. Open, Prune and Latest never touch an existing *.broken directory,
//     except that Prune deletes all but the newest three of them.
//
// A Store is safe for concurrent use. It does not lock the directory
// against other processes; the daemon owns the data dir.
package checkpoint
