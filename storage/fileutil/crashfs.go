package fileutil

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CrashFS is an in-memory FS that can lose power, in the spirit of
// pebble's vfs.NewCrashableMem. Besides the live view every FS has, it
// keeps what a power cut would leave:
//
//   - per file, its content as of its last File.Sync (a file never synced
//     is empty after a crash, if it survives at all);
//   - per directory, its set of entries as of its last SyncDir (a file or
//     directory whose entry was never synced is gone; a rename or removal
//     not followed by a SyncDir of the directory is undone).
//
// Entries point at nodes (inodes): a renamed file keeps its synced
// content under whichever name survives. CrashClone returns the FS as it
// would be after a power cut now; CrashAfter takes that clone
// automatically right after a chosen mutating operation, so a test can
// run a durable operation to its end and then reopen the store on the FS
// as a power cut after step i would have left it.
//
// Paths are cleaned and taken from "/"; relative paths are relative to
// "/". Hard links, symlinks, permissions and times are not modelled. A
// CrashFS is safe for concurrent use.
type CrashFS struct {
	mu      sync.Mutex
	root    *memNode
	ops     int // mutating operations so far
	crashAt int // take a crash clone after this op (0: never)
	crashed *CrashFS
}

var _ FS = (*CrashFS)(nil)

// memNode is a file or a directory.
type memNode struct {
	dir bool
	// file
	data, synced []byte
	// directory
	entries, syncedEntries map[string]*memNode
}

func newDirNode() *memNode {
	return &memNode{dir: true, entries: map[string]*memNode{}, syncedEntries: map[string]*memNode{}}
}

// NewCrashFS returns an empty CrashFS holding only the directory "/".
func NewCrashFS() *CrashFS { return &CrashFS{root: newDirNode()} }

// CrashClone returns a new CrashFS holding what would survive a power cut
// now: only synced file content and synced directory entries. c itself
// is unchanged and can go on being used.
func (c *CrashFS) CrashClone() *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &CrashFS{root: c.crashImage()}
}

// crashImage builds the surviving tree; c.mu is held. A node reachable
// under two synced names (a rename synced in both directories) stays one
// node.
func (c *CrashFS) crashImage() *memNode {
	seen := map[*memNode]*memNode{}
	var img func(n *memNode) *memNode
	img = func(n *memNode) *memNode {
		if m, ok := seen[n]; ok {
			return m
		}
		if !n.dir {
			m := &memNode{data: slices.Clone(n.synced), synced: slices.Clone(n.synced)}
			seen[n] = m
			return m
		}
		m := newDirNode()
		seen[n] = m
		for name, child := range n.syncedEntries {
			cm := img(child)
			m.entries[name], m.syncedEntries[name] = cm, cm
		}
		return m
	}
	return img(c.root)
}

// Ops returns the number of mutating operations performed so far: file
// creation, Write, Truncate, Sync, Rename, Remove, RemoveAll, MkdirAll and
// SyncDir, each counted whether or not it succeeded. Reads are not
// counted, since a power cut before or after a read leaves the same state.
func (c *CrashFS) Ops() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// CrashAfter arranges for a crash clone to be taken right after mutating
// operation number n (counting from 1, as Ops counts), replacing any
// clone taken before. n ≤ Ops() takes it at once.
func (c *CrashFS) CrashAfter(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.crashed = nil
	c.crashAt = n
	if n <= c.ops {
		c.crashed = &CrashFS{root: c.crashImage()}
		c.crashAt = 0
	}
}

// Crashed returns the clone CrashAfter arranged, or nil if operation n
// has not happened (yet).
func (c *CrashFS) Crashed() *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crashed
}

// step counts one mutating operation; c.mu is held.
func (c *CrashFS) step() {
	c.ops++
	if c.ops == c.crashAt {
		c.crashed = &CrashFS{root: c.crashImage()}
		c.crashAt = 0
	}
}

func split(name string) []string {
	p := filepath.Clean("/" + filepath.ToSlash(name))
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

func pathErr(op, path string, err error) error { return &os.PathError{Op: op, Path: path, Err: err} }

// lookup returns the node at name; c.mu is held.
func (c *CrashFS) lookup(op, name string) (*memNode, error) {
	n := c.root
	for _, part := range split(name) {
		if !n.dir {
			return nil, pathErr(op, name, syscall.ENOTDIR)
		}
		child, ok := n.entries[part]
		if !ok {
			return nil, pathErr(op, name, fs.ErrNotExist)
		}
		n = child
	}
	return n, nil
}

// parent returns the directory holding name and name's last element;
// c.mu is held.
func (c *CrashFS) parent(op, name string) (*memNode, string, error) {
	parts := split(name)
	if len(parts) == 0 {
		return nil, "", pathErr(op, name, syscall.EINVAL)
	}
	d, err := c.lookup(op, "/"+strings.Join(parts[:len(parts)-1], "/"))
	if err != nil {
		return nil, "", err
	}
	if !d.dir {
		return nil, "", pathErr(op, name, syscall.ENOTDIR)
	}
	return d, parts[len(parts)-1], nil
}

func (c *CrashFS) Create(name string, perm os.FileMode) (File, error) {
	return c.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
}

func (c *CrashFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	mutates := flag&(os.O_CREATE|os.O_TRUNC) != 0
	if mutates {
		defer c.step()
	}
	d, base, err := c.parent("open", name)
	if err != nil {
		return nil, err
	}
	n, ok := d.entries[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, pathErr("open", name, fs.ErrExist)
	case !ok && flag&os.O_CREATE == 0:
		return nil, pathErr("open", name, fs.ErrNotExist)
	case !ok:
		n = &memNode{}
		d.entries[base] = n
	case n.dir && flag&(os.O_WRONLY|os.O_RDWR|os.O_TRUNC) != 0:
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	if flag&os.O_TRUNC != 0 {
		n.data = n.data[:0]
	}
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	return &memFile{
		fs: c, n: n, name: name,
		read:   acc == os.O_RDONLY || acc == os.O_RDWR,
		write:  acc == os.O_WRONLY || acc == os.O_RDWR,
		append: flag&os.O_APPEND != 0,
	}, nil
}

func (c *CrashFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.step()
	od, ob, err := c.parent("rename", oldpath)
	if err != nil {
		return err
	}
	n, ok := od.entries[ob]
	if !ok {
		return pathErr("rename", oldpath, fs.ErrNotExist)
	}
	nd, nb, err := c.parent("rename", newpath)
	if err != nil {
		return err
	}
	if n.dir {
		// A directory cannot move into itself.
		if rel, err := filepath.Rel(filepath.Clean("/"+oldpath), filepath.Clean("/"+newpath)); err == nil && !strings.HasPrefix(rel, "..") && rel != "." {
			return pathErr("rename", newpath, syscall.EINVAL)
		}
	}
	if old, ok := nd.entries[nb]; ok && old != n {
		switch {
		case old.dir && !n.dir:
			return pathErr("rename", newpath, syscall.EISDIR)
		case !old.dir && n.dir:
			return pathErr("rename", newpath, syscall.ENOTDIR)
		case old.dir && len(old.entries) > 0:
			return pathErr("rename", newpath, syscall.ENOTEMPTY)
		}
	}
	delete(od.entries, ob)
	nd.entries[nb] = n
	return nil
}

func (c *CrashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.step()
	d, base, err := c.parent("remove", name)
	if err != nil {
		return err
	}
	n, ok := d.entries[base]
	switch {
	case !ok:
		return pathErr("remove", name, fs.ErrNotExist)
	case n.dir && len(n.entries) > 0:
		return pathErr("remove", name, syscall.ENOTEMPTY)
	}
	delete(d.entries, base)
	return nil
}

// RemoveAll removes path and, for a directory, everything under it. As on
// a real file system, the removal of the entries inside is as durable as
// the directories holding them: only SyncDir of path's parent makes the
// removal of path itself survive a crash.
func (c *CrashFS) RemoveAll(path string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.step()
	d, base, err := c.parent("removeall", path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	n, ok := d.entries[base]
	if !ok {
		return nil
	}
	var clear func(n *memNode)
	clear = func(n *memNode) {
		if !n.dir {
			return
		}
		for name, child := range n.entries {
			clear(child)
			delete(n.entries, name)
		}
	}
	clear(n)
	delete(d.entries, base)
	return nil
}

func (c *CrashFS) MkdirAll(dir string, perm os.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.step()
	n := c.root
	for _, part := range split(dir) {
		child, ok := n.entries[part]
		switch {
		case !ok:
			child = newDirNode()
			n.entries[part] = child
		case !child.dir:
			return pathErr("mkdir", dir, syscall.ENOTDIR)
		}
		n = child
	}
	return nil
}

func (c *CrashFS) ReadDir(dir string) ([]os.DirEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup("readdirent", dir)
	if err != nil {
		return nil, err
	}
	if !n.dir {
		return nil, pathErr("readdirent", dir, syscall.ENOTDIR)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range n.entries {
			if !yield(name) {
				return
			}
		}
	})
	out := make([]os.DirEntry, len(names))
	for i, name := range names {
		out[i] = fs.FileInfoToDirEntry(info(name, n.entries[name]))
	}
	return out, nil
}

func (c *CrashFS) Stat(name string) (os.FileInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return info(filepath.Base(filepath.Clean("/"+name)), n), nil
}

// SyncDir makes dir's current set of entries the one a crash leaves.
func (c *CrashFS) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.step()
	n, err := c.lookup("sync", dir)
	if err != nil {
		return err
	}
	if !n.dir {
		return pathErr("sync", dir, syscall.ENOTDIR)
	}
	n.syncedEntries = make(map[string]*memNode, len(n.entries))
	for name, child := range n.entries {
		n.syncedEntries[name] = child
	}
	return nil
}

// ReadFile returns the live content of the file name (a test helper).
func (c *CrashFS) ReadFile(name string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if n.dir {
		return nil, pathErr("read", name, syscall.EISDIR)
	}
	return slices.Clone(n.data), nil
}

// memInfo is the os.FileInfo of a node.
type memInfo struct {
	name string
	size int64
	dir  bool
}

func info(name string, n *memNode) memInfo {
	return memInfo{name: name, size: int64(len(n.data)), dir: n.dir}
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() os.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

// memFile is an open file of a CrashFS. It keeps its node when the name
// is renamed or removed, as an open descriptor does.
type memFile struct {
	fs                  *CrashFS
	n                   *memNode
	name                string
	pos                 int64
	read, write, append bool
	closed              bool
}

func (f *memFile) check(op string, allowed bool) error {
	switch {
	case f.closed:
		return pathErr(op, f.name, os.ErrClosed)
	case !allowed:
		return pathErr(op, f.name, syscall.EBADF)
	case f.n.dir && op != "stat" && op != "sync":
		return pathErr(op, f.name, syscall.EISDIR)
	}
	return nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read", f.read); err != nil {
		return 0, err
	}
	if f.pos >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	k := copy(p, f.n.data[f.pos:])
	f.pos += int64(k)
	return k, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("read", f.read); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, pathErr("read", f.name, syscall.EINVAL)
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	k := copy(p, f.n.data[off:])
	if k < len(p) {
		return k, io.EOF
	}
	return k, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	defer f.fs.step()
	if err := f.check("write", f.write); err != nil {
		return 0, err
	}
	if f.append {
		f.pos = int64(len(f.n.data))
	}
	if end := f.pos + int64(len(p)); end > int64(len(f.n.data)) {
		f.n.data = append(f.n.data, make([]byte, end-int64(len(f.n.data)))...)
	}
	copy(f.n.data[f.pos:], p)
	f.pos += int64(len(p))
	return len(p), nil
}

func (f *memFile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.check("stat", true); err != nil {
		return nil, err
	}
	return info(filepath.Base(filepath.Clean("/"+f.name)), f.n), nil
}

// Sync makes the file's current content the one a crash leaves. For a
// directory opened as a file it is SyncDir.
func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	defer f.fs.step()
	if err := f.check("sync", true); err != nil {
		return err
	}
	if f.n.dir {
		f.n.syncedEntries = make(map[string]*memNode, len(f.n.entries))
		for name, child := range f.n.entries {
			f.n.syncedEntries[name] = child
		}
		return nil
	}
	f.n.synced = slices.Clone(f.n.data)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	defer f.fs.step()
	if err := f.check("truncate", f.write); err != nil {
		return err
	}
	if size < 0 {
		return pathErr("truncate", f.name, syscall.EINVAL)
	}
	if size <= int64(len(f.n.data)) {
		f.n.data = f.n.data[:size]
	} else {
		f.n.data = append(f.n.data, make([]byte, size-int64(len(f.n.data)))...)
	}
	return nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return pathErr("close", f.name, os.ErrClosed)
	}
	f.closed = true
	return nil
}
