package powercut

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// hiddenName is the directory in the backing root that holds removed inodes
// which are still durable somewhere, and the staging area of Cut. It is not
// visible through the mount.
const hiddenName = ".powercut"

// extent is a run of durable bytes of a file that has since been overwritten
// or truncated away.
type extent struct {
	off  int64
	data []byte
}

func (e extent) end() int64 { return e.off + int64(len(e.data)) }

// journal is what must be undone on a file to bring it back to its last
// fsync: its durable size and the durable bytes of changed ranges below it.
type journal struct {
	size  int64
	saved []extent // sorted by off, not overlapping
}

// dent is one directory entry: a name and the inode it names.
type dent struct {
	ino uint64
	dir bool
}

// state is the durability record of one backing directory. All of it is
// guarded by FS.mu.
type state struct {
	backing string
	rootIno uint64
	// files holds a journal for every inode changed since its last fsync.
	files map[uint64]*journal
	// dirs holds the durable entries of every directory changed since its
	// last fsync. A directory not in dirs is clean: its entries on disk are
	// its durable ones.
	dirs map[uint64]map[string]dent
	// refs counts, per inode, the entries in dirs that name it.
	refs map[uint64]int
	// grave maps a name in the hidden directory to the removed inode it
	// keeps alive.
	grave map[string]dent
	seq   int
}

func newState(backing string) (*state, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("powercut: stat backing: %w", err)
	}
	s := &state{backing: backing, rootIno: st.Ino}
	s.reset()
	return s, nil
}

func (s *state) reset() {
	s.files = map[uint64]*journal{}
	s.dirs = map[uint64]map[string]dent{}
	s.refs = map[uint64]int{}
	s.grave = map[string]dent{}
}

func (s *state) hidden() string { return filepath.Join(s.backing, hiddenName) }

// listDir reads the entries of the backing directory p, without the hidden
// directory when p is the backing root.
func (s *state) listDir(p string) (map[string]dent, error) {
	des, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	out := make(map[string]dent, len(des))
	for _, de := range des {
		if p == s.backing && de.Name() == hiddenName {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(p, de.Name()), &st); err != nil {
			return nil, err
		}
		out[de.Name()] = dent{ino: st.Ino, dir: st.Mode&syscall.S_IFMT == syscall.S_IFDIR}
	}
	return out, nil
}

// touchDir records that directory ino at backing path p is about to change:
// the first change after a sync snapshots its entries.
func (s *state) touchDir(ino uint64, p string) error {
	if _, ok := s.dirs[ino]; ok {
		return nil
	}
	ents, err := s.listDir(p)
	if err != nil {
		return err
	}
	s.dirs[ino] = ents
	for _, e := range ents {
		s.refs[e.ino]++
	}
	return nil
}

// dropDir forgets the snapshot of directory ino (it was synced or it died).
func (s *state) dropDir(ino uint64) {
	ents, ok := s.dirs[ino]
	if !ok {
		return
	}
	delete(s.dirs, ino)
	for _, e := range ents {
		if s.refs[e.ino]--; s.refs[e.ino] <= 0 {
			delete(s.refs, e.ino)
		}
	}
}

// syncDir makes the entries of directory ino durable and deletes removed
// inodes that no snapshot names any more.
func (s *state) syncDir(ino uint64) error {
	s.dropDir(ino)
	return s.collect()
}

// collect deletes hidden inodes that no snapshot names.
func (s *state) collect() error {
	for changed := true; changed; {
		changed = false
		for name, e := range s.grave {
			if s.refs[e.ino] > 0 {
				continue
			}
			p := filepath.Join(s.hidden(), name)
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				return err
			}
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			delete(s.grave, name)
			if e.dir || st.Nlink <= 1 {
				s.forget(e.ino)
			}
			changed = true
		}
	}
	return nil
}

// forget drops everything recorded about an inode that no longer exists.
func (s *state) forget(ino uint64) {
	delete(s.files, ino)
	s.dropDir(ino)
}

// remove takes the entry name out of directory dir (backing path dirPath),
// which must already be touched. If a snapshot still names the inode, the
// entry moves into the hidden directory instead of being deleted.
func (s *state) remove(dirPath, name string) error {
	p := filepath.Join(dirPath, name)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return err
	}
	isDir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
	if s.refs[st.Ino] > 0 {
		if err := os.MkdirAll(s.hidden(), 0o700); err != nil {
			return err
		}
		s.seq++
		g := strconv.Itoa(s.seq)
		if err := syscall.Rename(p, filepath.Join(s.hidden(), g)); err != nil {
			return err
		}
		s.grave[g] = dent{ino: st.Ino, dir: isDir}
		return nil
	}
	var err error
	if isDir {
		err = syscall.Rmdir(p)
	} else {
		err = syscall.Unlink(p)
	}
	if err != nil {
		return err
	}
	if isDir || st.Nlink <= 1 {
		s.forget(st.Ino)
	}
	return nil
}

// fileJournal returns the journal of inode ino, starting one with the
// current size of f when the file is clean.
func (s *state) fileJournal(ino uint64, f *os.File) (*journal, error) {
	if j, ok := s.files[ino]; ok {
		return j, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	j := &journal{size: fi.Size()}
	s.files[ino] = j
	return j, nil
}

// save keeps the durable bytes of [off, off+n) of f before they change.
// Bytes at or beyond the durable size need nothing: Cut truncates them.
func (s *state) save(ino uint64, f *os.File, off, n int64) error {
	j, err := s.fileJournal(ino, f)
	if err != nil {
		return err
	}
	end := off + n
	if n < 0 || end < off { // to the end
		end = math.MaxInt64
	}
	end = min(end, j.size)
	if off >= end {
		return nil
	}
	var gaps []extent
	at := off
	for _, e := range j.saved {
		if e.end() <= at {
			continue
		}
		if e.off >= end {
			break
		}
		if e.off > at {
			gaps = append(gaps, extent{off: at, data: make([]byte, e.off-at)})
		}
		at = max(at, e.end())
	}
	if at < end {
		gaps = append(gaps, extent{off: at, data: make([]byte, end-at)})
	}
	for _, g := range gaps {
		// A short read leaves zeros: the file is shorter than its durable
		// size only where a truncate already saved the bytes.
		if _, err := f.ReadAt(g.data, g.off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	j.saved = append(j.saved, gaps...)
	slices.SortFunc(j.saved, func(a, b extent) int { return cmp.Compare(a.off, b.off) })
	return nil
}

// syncFile makes the contents of inode ino durable.
func (s *state) syncFile(ino uint64) { delete(s.files, ino) }

// cut rewrites the backing directory to its durable state. No mount may be
// serving it.
func (s *state) cut() error {
	// Where is every inode now? (Directories have one name; any name of
	// a file will do.)
	where := map[uint64]string{}
	var walk func(p string) error
	walk = func(p string) error {
		des, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, de := range des {
			c := filepath.Join(p, de.Name())
			var st syscall.Stat_t
			if err := syscall.Lstat(c, &st); err != nil {
				return err
			}
			if _, ok := where[st.Ino]; !ok {
				where[st.Ino] = c
			}
			if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
				if err := walk(c); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(s.backing); err != nil {
		return fmt.Errorf("powercut: cut: %w", err)
	}
	delete(where, s.rootIno)

	// Undo file changes since their last fsync.
	for ino, j := range s.files {
		p, ok := where[ino]
		if !ok {
			continue
		}
		if err := j.undo(p); err != nil {
			return fmt.Errorf("powercut: cut: restore %s: %w", p, err)
		}
	}

	// Build the durable tree in a staging directory.
	stage := filepath.Join(s.hidden(), "stage")
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return err
	}
	seen := map[uint64]bool{s.rootIno: true}
	var build func(ino uint64, src, dst string) error
	build = func(ino uint64, src, dst string) error {
		ents, ok := s.dirs[ino]
		if !ok {
			var err error
			if ents, err = s.listDir(src); err != nil {
				return err
			}
		}
		names := make([]string, 0, len(ents))
		for n := range ents {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			e := ents[n]
			p, ok := where[e.ino]
			if !ok {
				return fmt.Errorf("durable entry %s/%s names inode %d, which is gone", src, n, e.ino)
			}
			d := filepath.Join(dst, n)
			if !e.dir {
				if err := os.Link(p, d); err != nil {
					return err
				}
				continue
			}
			if seen[e.ino] {
				continue
			}
			seen[e.ino] = true
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				return err
			}
			if err := syscall.Mkdir(d, st.Mode&0o7777); err != nil {
				return err
			}
			if err := os.Lchown(d, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
			if err := syscall.Chmod(d, st.Mode&0o7777); err != nil {
				return err
			}
			if err := build(e.ino, p, d); err != nil {
				return err
			}
		}
		return nil
	}
	if err := build(s.rootIno, s.backing, stage); err != nil {
		return fmt.Errorf("powercut: cut: %w", err)
	}

	// Swap it in and delete the rest.
	old := filepath.Join(s.hidden(), "old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	cur, err := s.listDir(s.backing)
	if err != nil {
		return err
	}
	for n := range cur {
		if err := os.Rename(filepath.Join(s.backing, n), filepath.Join(old, n)); err != nil {
			return fmt.Errorf("powercut: cut: %w", err)
		}
	}
	des, err := os.ReadDir(stage)
	if err != nil {
		return err
	}
	for _, de := range des {
		if err := os.Rename(filepath.Join(stage, de.Name()), filepath.Join(s.backing, de.Name())); err != nil {
			return fmt.Errorf("powercut: cut: %w", err)
		}
	}
	if err := os.RemoveAll(s.hidden()); err != nil {
		return fmt.Errorf("powercut: cut: %w", err)
	}
	s.reset()
	return nil
}

// undo brings the file at p back to the journalled durable state.
func (j *journal) undo(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	for _, e := range j.saved {
		if _, err := f.WriteAt(e.data, e.off); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Truncate(j.size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// truncate sets the size of f (inode ino), keeping the durable bytes it cuts
// off.
func (s *state) truncate(ino uint64, f *os.File, size int64) error {
	if err := s.save(ino, f, size, -1); err != nil {
		return err
	}
	return f.Truncate(size)
}
