package powercut

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// generation is one mount of the file system. Cut ends it: every later
// operation that still reaches its nodes and handles fails with EIO.
type generation struct {
	dead bool // guarded by FS.mu
	srv  *fuse.Server
	conn string // FUSE connection id, the name under fusectl
}

// node is a file, directory or other inode of one generation.
type node struct {
	fs.Inode
	fsys *FS
	gen  *generation
}

var (
	_ fs.NodeLookuper   = (*node)(nil)
	_ fs.NodeGetattrer  = (*node)(nil)
	_ fs.NodeSetattrer  = (*node)(nil)
	_ fs.NodeReadlinker = (*node)(nil)
	_ fs.NodeOpener     = (*node)(nil)
	_ fs.NodeCreater    = (*node)(nil)
	_ fs.NodeMkdirer    = (*node)(nil)
	_ fs.NodeMknoder    = (*node)(nil)
	_ fs.NodeSymlinker  = (*node)(nil)
	_ fs.NodeLinker     = (*node)(nil)
	_ fs.NodeUnlinker   = (*node)(nil)
	_ fs.NodeRmdirer    = (*node)(nil)
	_ fs.NodeRenamer    = (*node)(nil)
	_ fs.NodeReaddirer  = (*node)(nil)
	_ fs.NodeFsyncer    = (*node)(nil)
	_ fs.NodeStatfser   = (*node)(nil)
	_ fs.NodeAllocater  = (*node)(nil)
)

// enter takes FS.mu for an operation of generation g. It reports false,
// without the lock, when g has been cut.
func (f *FS) enter(g *generation) bool {
	f.mu.Lock()
	if g.dead {
		f.mu.Unlock()
		return false
	}
	return true
}

func (n *node) enter() bool { return n.fsys.enter(n.gen) }

func (n *node) st() *state { return n.fsys.st }

// bpath is the node's path in the backing directory.
func (n *node) bpath() string {
	if n.IsRoot() {
		return n.st().backing
	}
	return filepath.Join(n.st().backing, n.Path(n.Root()))
}

// ino is the backing inode number of the node.
func (n *node) ino() uint64 {
	if n.IsRoot() {
		return n.st().rootIno
	}
	return n.StableAttr().Ino
}

func (n *node) isDir() bool {
	return n.IsRoot() || n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR
}

// hiddenChild reports whether name in n is the hidden directory.
func (n *node) hiddenChild(name string) bool { return n.IsRoot() && name == hiddenName }

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return fs.ToErrno(err)
}

// child makes the inode for the backing entry p, a child of n.
func (n *node) child(ctx context.Context, p string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, errno(err)
	}
	gen := uint64(1)
	var sx unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &sx) == nil &&
		sx.Mask&unix.STATX_BTIME != 0 && (sx.Btime.Sec != 0 || sx.Btime.Nsec != 0) {
		gen = uint64(sx.Btime.Sec)*1e9 + uint64(sx.Btime.Nsec)
	}
	out.Attr.FromStat(&st)
	c := &node{fsys: n.fsys, gen: n.gen}
	return n.NewInode(ctx, c, fs.StableAttr{Mode: st.Mode, Ino: st.Ino, Gen: gen}), 0
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.enter() {
		return nil, syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	if n.hiddenChild(name) {
		return nil, syscall.ENOENT
	}
	return n.child(ctx, filepath.Join(n.bpath(), name), out)
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.enter() {
		return syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	var st syscall.Stat_t
	var err error
	if h, ok := f.(*handle); ok {
		err = syscall.Fstat(int(h.f.Fd()), &st)
	} else {
		err = syscall.Lstat(n.bpath(), &st)
	}
	if err != nil {
		return errno(err)
	}
	out.FromStat(&st)
	return 0
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.enter() {
		return syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	p := n.bpath()
	h, _ := f.(*handle)
	if sz, ok := in.GetSize(); ok {
		file := (*os.File)(nil)
		if h != nil {
			file = h.f
		} else {
			var err error
			if file, err = os.OpenFile(p, os.O_RDWR, 0); err != nil {
				return errno(err)
			}
			defer file.Close()
		}
		if err := n.st().truncate(n.ino(), file, int64(sz)); err != nil {
			return errno(err)
		}
	}
	if m, ok := in.GetMode(); ok {
		if err := syscall.Chmod(p, m); err != nil {
			return errno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		su, sg := -1, -1
		if uok {
			su = int(uid)
		}
		if gok {
			sg = int(gid)
		}
		if err := os.Lchown(p, su, sg); err != nil {
			return errno(err)
		}
	}
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return errno(err)
		}
	}
	var st syscall.Stat_t
	var err error
	if h != nil {
		err = syscall.Fstat(int(h.f.Fd()), &st)
	} else {
		err = syscall.Lstat(p, &st)
	}
	if err != nil {
		return errno(err)
	}
	out.FromStat(&st)
	return 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if !n.enter() {
		return nil, syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	t, err := os.Readlink(n.bpath())
	if err != nil {
		return nil, errno(err)
	}
	return []byte(t), 0
}

// openFlags are the open(2) flags passed to the backing file. O_APPEND is
// dropped because the kernel already turns appends into writes at the end
// (and pwrite on an O_APPEND descriptor ignores its offset); O_TRUNC is done
// through the journal.
// Write-only opens become read-write: the journal reads what a write
// replaces.
func openFlags(flags uint32) int {
	fl := int(flags) &^ (syscall.O_APPEND | syscall.O_TRUNC | syscall.O_CREAT | syscall.O_EXCL | fuse.FMODE_EXEC)
	if fl&syscall.O_ACCMODE == syscall.O_WRONLY {
		fl = fl&^syscall.O_ACCMODE | syscall.O_RDWR
	}
	return fl
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.enter() {
		return nil, 0, syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	f, err := os.OpenFile(n.bpath(), openFlags(flags), 0)
	if err != nil {
		return nil, 0, errno(err)
	}
	if flags&syscall.O_TRUNC != 0 {
		if err := n.st().truncate(n.ino(), f, 0); err != nil {
			f.Close()
			return nil, 0, errno(err)
		}
	}
	return &handle{fsys: n.fsys, gen: n.gen, f: f, ino: n.ino()}, 0, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !n.enter() {
		return nil, nil, 0, syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	if n.hiddenChild(name) {
		return nil, nil, 0, syscall.EPERM
	}
	dp := n.bpath()
	p := filepath.Join(dp, name)
	if err := n.st().touchDir(n.ino(), dp); err != nil {
		return nil, nil, 0, errno(err)
	}
	_, statErr := os.Lstat(p)
	f, err := os.OpenFile(p, openFlags(flags)|os.O_CREATE|int(flags&syscall.O_EXCL), os.FileMode(mode&0o7777))
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, nil, 0, errno(err)
	}
	if statErr == nil && flags&syscall.O_TRUNC != 0 {
		if err := n.st().truncate(st.Ino, f, 0); err != nil {
			f.Close()
			return nil, nil, 0, errno(err)
		}
	}
	ch, e := n.child(ctx, p, out)
	if e != 0 {
		f.Close()
		return nil, nil, 0, e
	}
	return ch, &handle{fsys: n.fsys, gen: n.gen, f: f, ino: st.Ino}, 0, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeEntry(ctx, name, out, func(p string) error { return syscall.Mkdir(p, mode) })
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeEntry(ctx, name, out, func(p string) error { return syscall.Mknod(p, mode, int(rdev)) })
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.makeEntry(ctx, name, out, func(p string) error { return syscall.Symlink(target, p) })
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok || t.fsys != n.fsys {
		return nil, syscall.EXDEV
	}
	if _, parent := t.Parent(); parent == nil {
		return nil, syscall.EXDEV // O_TMPFILE: no name to link from
	}
	return n.makeEntry(ctx, name, out, func(p string) error { return syscall.Link(t.bpath(), p) })
}

// makeEntry adds the entry name to n with mk, which is given its backing
// path.
func (n *node) makeEntry(ctx context.Context, name string, out *fuse.EntryOut, mk func(p string) error) (*fs.Inode, syscall.Errno) {
	if !n.enter() {
		return nil, syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	if n.hiddenChild(name) {
		return nil, syscall.EPERM
	}
	dp := n.bpath()
	if err := n.st().touchDir(n.ino(), dp); err != nil {
		return nil, errno(err)
	}
	p := filepath.Join(dp, name)
	if err := mk(p); err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, p, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.removeEntry(name, false)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.removeEntry(name, true)
}

func (n *node) removeEntry(name string, dir bool) syscall.Errno {
	if !n.enter() {
		return syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	if n.hiddenChild(name) {
		return syscall.ENOENT
	}
	dp := n.bpath()
	p := filepath.Join(dp, name)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return errno(err)
	}
	isDir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
	switch {
	case dir && !isDir:
		return syscall.ENOTDIR
	case !dir && isDir:
		return syscall.EISDIR
	case isDir:
		if e := checkEmpty(p); e != 0 {
			return e
		}
	}
	if err := n.st().touchDir(n.ino(), dp); err != nil {
		return errno(err)
	}
	return errno(n.st().remove(dp, name))
}

func checkEmpty(p string) syscall.Errno {
	d, err := os.Open(p)
	if err != nil {
		return errno(err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if len(names) > 0 {
		return syscall.ENOTEMPTY
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return errno(err)
	}
	return 0
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok || np.fsys != n.fsys {
		return syscall.EXDEV
	}
	if flags&^unix.RENAME_NOREPLACE != 0 {
		return syscall.EINVAL
	}
	if !n.enter() {
		return syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	if n.hiddenChild(name) || np.hiddenChild(newName) {
		return syscall.EPERM
	}
	d1, d2 := n.bpath(), np.bpath()
	p1, p2 := filepath.Join(d1, name), filepath.Join(d2, newName)
	var st1, st2 syscall.Stat_t
	if err := syscall.Lstat(p1, &st1); err != nil {
		return errno(err)
	}
	victim := syscall.Lstat(p2, &st2) == nil
	if victim {
		if flags&unix.RENAME_NOREPLACE != 0 {
			return syscall.EEXIST
		}
		if st1.Ino == st2.Ino {
			return 0 // two names of one inode: rename(2) does nothing
		}
		dir1 := st1.Mode&syscall.S_IFMT == syscall.S_IFDIR
		dir2 := st2.Mode&syscall.S_IFMT == syscall.S_IFDIR
		switch {
		case dir1 && !dir2:
			return syscall.ENOTDIR
		case !dir1 && dir2:
			return syscall.EISDIR
		case dir2:
			if e := checkEmpty(p2); e != 0 {
				return e
			}
		}
	}
	if err := n.st().touchDir(n.ino(), d1); err != nil {
		return errno(err)
	}
	if err := n.st().touchDir(np.ino(), d2); err != nil {
		return errno(err)
	}
	if victim {
		if err := n.st().remove(d2, newName); err != nil {
			return errno(err)
		}
	}
	return errno(syscall.Rename(p1, p2))
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !n.enter() {
		return nil, syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	p := n.bpath()
	des, err := os.ReadDir(p)
	if err != nil {
		return nil, errno(err)
	}
	list := make([]fuse.DirEntry, 0, len(des))
	for _, de := range des {
		if n.hiddenChild(de.Name()) {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(p, de.Name()), &st); err != nil {
			continue // removed meanwhile by nobody: we hold the lock; skip to be safe
		}
		list = append(list, fuse.DirEntry{Name: de.Name(), Mode: st.Mode, Ino: st.Ino})
	}
	return fs.NewListDirStream(list), 0
}

// Fsync makes a file's data, or a directory's entries, durable.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if !n.enter() {
		return syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	if n.isDir() {
		return errno(n.st().syncDir(n.ino()))
	}
	n.st().syncFile(n.ino())
	return 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if !n.enter() {
		return syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	var s syscall.Statfs_t
	if err := syscall.Statfs(n.st().backing, &s); err != nil {
		return errno(err)
	}
	out.FromStatfsT(&s)
	return 0
}

func (n *node) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	h, ok := f.(*handle)
	if !ok {
		return syscall.EBADF
	}
	if !n.enter() {
		return syscall.EIO
	}
	defer n.fsys.mu.Unlock()
	if mode&^unix.FALLOC_FL_KEEP_SIZE != 0 {
		// Punching, zeroing, collapsing or inserting changes data from off on.
		if err := n.st().save(h.ino, h.f, int64(off), -1); err != nil {
			return errno(err)
		}
	}
	return errno(unix.Fallocate(int(h.f.Fd()), mode, int64(off), int64(size)))
}

// handle is an open file of one generation.
type handle struct {
	fsys *FS
	gen  *generation
	f    *os.File
	ino  uint64
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileFlusher  = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
	_ fs.FileLseeker  = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if !h.fsys.enter(h.gen) {
		return nil, syscall.EIO
	}
	defer h.fsys.mu.Unlock()
	n, err := h.f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, errno(err)
	}
	return fuse.ReadResultData(buf[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.fsys.enter(h.gen) {
		return 0, syscall.EIO
	}
	defer h.fsys.mu.Unlock()
	if err := h.fsys.st.save(h.ino, h.f, off, int64(len(data))); err != nil {
		return 0, errno(err)
	}
	n, err := h.f.WriteAt(data, off)
	return uint32(n), errno(err)
}

// Flush succeeds on a cut generation too, so that closing an old
// descriptor works.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

// Release closes the backing file. When that was the last reference to an
// inode with no name left, its journal goes: the inode number may be reused.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	if h.fsys.enter(h.gen) {
		var st syscall.Stat_t
		if syscall.Fstat(int(h.f.Fd()), &st) == nil && st.Nlink == 0 {
			h.fsys.st.forget(h.ino)
		}
		h.fsys.mu.Unlock()
	}
	return errno(h.f.Close())
}

func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	if !h.fsys.enter(h.gen) {
		return 0, syscall.EIO
	}
	defer h.fsys.mu.Unlock()
	r, err := unix.Seek(int(h.f.Fd()), int64(off), int(whence))
	return uint64(r), errno(err)
}
