// Package powercut is a FUSE file system for tests that loses, on command,
// everything a power cut would lose.
//
// Mount(tb, backing) mounts a file system at FS.Dir() that passes every
// operation through to the directory backing, so reads always see the latest
// writes. What it adds is a record of what is not yet durable, and Cut, which
// throws that away. The durability model is the strict POSIX one, the one a
// careful program must assume:
//
//   - File contents (writes, truncates, O_TRUNC, fallocate that punches or
//     zeroes) are durable as of the file's last fsync or fdatasync (the two
//     are the same here). An fsync on any descriptor of an inode covers every
//     descriptor and every hard link of it.
//   - Directory entries (create, mknod, mkdir, symlink, link, unlink, rmdir,
//     rename) are durable as of the last fsync of the directory that holds
//     them. A rename changes two directories; each keeps the entry it had at
//     its own last fsync. A hard link is an entry in the new directory only.
//     An fsync of a file does not make its name durable.
//   - A directory that was created but whose parent was not synced since is
//     lost with everything below it; a synced entry naming a file whose data
//     was never synced gives an empty file.
//   - Everything under backing at Mount time counts as durable.
//   - Mode, owner and times are written through and are not rolled back;
//     fsync is not passed on to the backing disk (durability is this model,
//     not the backing device).
//
// Cut puts the backing directory into exactly the durable state: file data
// as of each file's last fsync, directory entries as of each directory's last
// fsync. It then mounts a fresh file system at the same Dir(), as after a
// reboot, and no kernel cache survives. Descriptors (and working
// directories) from before the cut fail: the old mount is detached and its
// FUSE connection aborted through fusectl (mounted at /sys/fs/fuse/connections
// if it is not), so they get ENOTCONN; closing them works. Where fusectl is
// unavailable they get EIO instead, and Unmount waits for them to be closed.
// Kill the processes using the mount before or at the cut. A directory moved between two parents where only
// one side was synced before the cut would be durable in both; it appears once,
// where a walk of the durable tree from the root (names in byte order) meets
// it first.
//
// Not supported: O_TMPFILE followed by linkat (EXDEV), RENAME_EXCHANGE
// (EINVAL), extended attributes. copy_file_range is done by the kernel as
// reads and writes through the mount. flock and POSIX locks are kept by the
// kernel and, as after a reboot, are gone after a cut.
//
// How: writes go through to the backing directory. Per inode, an undo journal
// keeps the durable size and the durable bytes of every range overwritten or
// truncated away since the last fsync; per directory, the first change after
// an fsync takes a snapshot of its entries (name to inode). A name removed
// (unlink, rmdir, rename over it) whose inode some snapshot still names is
// moved into a hidden directory (.powercut in backing, not visible through the
// mount) instead of being deleted, so the inode and its data stay reachable.
// Cut replays the journals, builds the durable tree from the snapshots (hard
// links to the surviving inodes, fresh directories), swaps it in, and deletes
// the rest. A directory fsync deletes hidden inodes no snapshot names any more.
//
// Space: a removed inode that is still durable keeps its blocks (in the
// hidden directory) until its directory is synced or the next cut, as a
// file kept open would. Errors of the backing file system, ENOSPC included,
// reach the caller unchanged, so Mount over a diskfull.Tmpfs gives a small
// disk with power cuts. Mount one FS per backing directory, and change the
// backing directory only through it.
//
// The FUSE server runs in the test process. If that process dies without
// its cleanups (a panic) while it has files open on the mount, it hangs in
// exit; `echo 1 > /sys/fs/fuse/connections/*/abort` frees it.
//
// Mounting needs /dev/fuse and root (the mount(2) call is made directly,
// without fusermount); Mount skips the test with a message otherwise.
package powercut
