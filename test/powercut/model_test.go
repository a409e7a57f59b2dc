package powercut_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/eddy-stream/eddy/test/powercut"
)

// minode is an inode of the model: the current and the durable view.
type minode struct {
	dir           bool
	data, durable []byte             // files
	ents, dents   map[string]*minode // directories
}

func newDir() *minode {
	return &minode{dir: true, ents: map[string]*minode{}, dents: map[string]*minode{}}
}

// model is the package's durability semantics written as plainly as
// possible.
type model struct{ root *minode }

func (m *model) lookup(p string) *minode {
	n := m.root
	if p == "" {
		return n
	}
	for _, s := range splitPath(p) {
		if n == nil || !n.dir {
			return nil
		}
		n = n.ents[s]
	}
	return n
}

func splitPath(p string) []string {
	var out []string
	for p != "" && p != "." {
		d, f := filepath.Split(p)
		out = append([]string{f}, out...)
		p = filepath.Clean(d)
		if p == "/" || p == "." {
			break
		}
	}
	return out
}

func (m *model) cut() {
	seen := map[*minode]bool{}
	var rebuild func(d *minode)
	rebuild = func(d *minode) {
		d.ents = maps.Clone(d.dents)
		for _, name := range slices.Sorted(maps.Keys(d.ents)) {
			c := d.ents[name]
			if c.dir {
				if seen[c] {
					delete(d.ents, name)
					delete(d.dents, name)
					continue
				}
				seen[c] = true
				rebuild(c)
			} else {
				c.data = slices.Clone(c.durable)
			}
		}
	}
	seen[m.root] = true
	rebuild(m.root)
}

type seenEntry struct {
	dir  bool
	data string
}

func modelTree(m *model) (map[string]seenEntry, map[string]*minode) {
	ents := map[string]seenEntry{}
	ids := map[string]*minode{}
	var walk func(p string, d *minode)
	walk = func(p string, d *minode) {
		for name, c := range d.ents {
			cp := filepath.Join(p, name)
			ents[cp] = seenEntry{dir: c.dir, data: string(c.data)}
			ids[cp] = c
			if c.dir {
				walk(cp, c)
			}
		}
	}
	walk("", m.root)
	return ents, ids
}

func realTree(t *testing.T, root string) (map[string]seenEntry, map[string]uint64) {
	t.Helper()
	ents := map[string]seenEntry{}
	ids := map[string]uint64{}
	var walk func(p string)
	walk = func(p string) {
		des, err := os.ReadDir(filepath.Join(root, p))
		must(t, err)
		for _, de := range des {
			cp := filepath.Join(p, de.Name())
			var st syscall.Stat_t
			must(t, syscall.Lstat(filepath.Join(root, cp), &st))
			e := seenEntry{dir: de.IsDir()}
			if !e.dir {
				b, err := os.ReadFile(filepath.Join(root, cp))
				must(t, err)
				e.data = string(b)
			}
			ents[cp] = e
			ids[cp] = st.Ino
			if e.dir {
				walk(cp)
			}
		}
	}
	walk("")
	return ents, ids
}

// compare checks the tree at root against the model: names, kinds,
// contents, and which names share an inode.
func compare(t *testing.T, what, root string, m *model) {
	t.Helper()
	want, wantIDs := modelTree(m)
	got, gotIDs := realTree(t, root)
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Fatalf("%s: %s missing (want dir=%v %q)", what, p, w.dir, w.data)
		case g != w:
			t.Fatalf("%s: %s is dir=%v %q, want dir=%v %q", what, p, g.dir, g.data, w.dir, w.data)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Fatalf("%s: unexpected %s", what, p)
		}
	}
	m2r := map[*minode]uint64{}
	r2m := map[uint64]*minode{}
	for p, mn := range wantIDs {
		ino := gotIDs[p]
		if i, ok := m2r[mn]; ok && i != ino {
			t.Fatalf("%s: %s should be a hard link of inode %d, is inode %d", what, p, i, ino)
		}
		if n, ok := r2m[ino]; ok && n != mn {
			t.Fatalf("%s: %s shares inode %d with another file, should not", what, p, ino)
		}
		m2r[mn], r2m[ino] = ino, mn
	}
}

// TestRandomAgainstModel runs random file and directory operations with
// random cuts, and checks the mount (and, after each cut, the backing
// directory) against the model after every step. POWERCUT_SEED repeats a
// run.
func TestRandomAgainstModel(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv("POWERCUT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("POWERCUT_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	fsys := powercut.Mount(t, t.TempDir())
	root := fsys.Dir()
	m := &model{root: newDir()}
	for _, d := range []string{"a", "b"} {
		must(t, os.Mkdir(filepath.Join(root, d), 0o755))
		m.root.ents[d] = newDir()
	}
	syncPath(t, root)
	m.root.dents = maps.Clone(m.root.ents)

	steps := 1500
	if testing.Short() {
		steps = 300
	}
	cuts := 0
	for step := range steps {
		dirs := []string{"", "a", "b"}
		if c := m.lookup("c"); c != nil {
			dirs = append(dirs, "c")
		}
		var files []string
		_, ids := modelTree(m)
		for p, n := range ids {
			if !n.dir {
				files = append(files, p)
			}
		}
		slices.Sort(files)
		randName := func() (string, string) {
			d := dirs[rng.IntN(len(dirs))]
			return d, filepath.Join(d, "f"+strconv.Itoa(rng.IntN(3)))
		}
		pick := func() (string, *minode) {
			if len(files) == 0 {
				return "", nil
			}
			p := files[rng.IntN(len(files))]
			return p, m.lookup(p)
		}
		real := func(p string) string { return filepath.Join(root, p) }

		var op string
		switch r := rng.IntN(100); {
		case r < 25: // write, creating the file if needed
			d, p := randName()
			n := m.lookup(p)
			if n != nil && n.dir {
				continue
			}
			data := []byte(fmt.Sprintf("<%d>", step))
			flags := os.O_RDWR
			if rng.IntN(4) == 0 {
				flags = os.O_WRONLY | os.O_APPEND
			}
			if n == nil {
				flags |= os.O_CREATE | os.O_EXCL
				n = &minode{}
				m.lookup(d).ents[filepath.Base(p)] = n
			}
			f, err := os.OpenFile(real(p), flags, 0o644)
			must(t, err)
			off := int64(len(n.data))
			if flags&os.O_APPEND == 0 {
				off = rng.Int64N(int64(len(n.data)) + 6)
				_, err = f.WriteAt(data, off)
			} else {
				_, err = f.Write(data)
			}
			must(t, err)
			synced := rng.IntN(3) == 0
			if synced {
				must(t, f.Sync())
			}
			must(t, f.Close())
			if grow := off + int64(len(data)) - int64(len(n.data)); grow > 0 {
				n.data = append(n.data, make([]byte, grow)...)
			}
			copy(n.data[off:], data)
			if synced {
				n.durable = slices.Clone(n.data)
			}
			op = fmt.Sprintf("write %s at %d (sync %v)", p, off, synced)
		case r < 33:
			p, n := pick()
			if n == nil {
				continue
			}
			size := rng.Int64N(int64(len(n.data)) + 6)
			must(t, os.Truncate(real(p), size))
			if size <= int64(len(n.data)) {
				n.data = n.data[:size]
			} else {
				n.data = append(n.data, make([]byte, size-int64(len(n.data)))...)
			}
			op = fmt.Sprintf("truncate %s %d", p, size)
		case r < 48:
			p, n := pick()
			if n == nil {
				continue
			}
			f, err := os.OpenFile(real(p), os.O_RDONLY, 0)
			must(t, err)
			must(t, f.Sync())
			must(t, f.Close())
			n.durable = slices.Clone(n.data)
			op = "fsync " + p
		case r < 63:
			d := dirs[rng.IntN(len(dirs))]
			syncPath(t, real(d))
			dn := m.lookup(d)
			dn.dents = maps.Clone(dn.ents)
			op = "fsync dir /" + d
		case r < 73:
			p, n := pick()
			if n == nil {
				continue
			}
			d2, p2 := randName()
			if v := m.lookup(p2); v != nil && v.dir {
				continue
			}
			must(t, os.Rename(real(p), real(p2)))
			if m.lookup(p2) != n {
				delete(m.lookup(filepath.Dir(p)).ents, filepath.Base(p))
				m.lookup(d2).ents[filepath.Base(p2)] = n
			}
			op = fmt.Sprintf("rename %s %s", p, p2)
		case r < 80:
			p, n := pick()
			if n == nil {
				continue
			}
			d2, p2 := randName()
			if m.lookup(p2) != nil {
				continue
			}
			must(t, os.Link(real(p), real(p2)))
			m.lookup(d2).ents[filepath.Base(p2)] = n
			op = fmt.Sprintf("link %s %s", p, p2)
		case r < 88:
			p, _ := pick()
			if p == "" {
				continue
			}
			must(t, os.Remove(real(p)))
			delete(m.lookup(filepath.Dir(p)).ents, filepath.Base(p))
			op = "unlink " + p
		case r < 93:
			c := m.lookup("c")
			if c == nil {
				must(t, os.Mkdir(real("c"), 0o755))
				m.root.ents["c"] = newDir()
				op = "mkdir c"
			} else if len(c.ents) == 0 {
				must(t, os.Remove(real("c")))
				delete(m.root.ents, "c")
				op = "rmdir c"
			} else {
				continue
			}
		default:
			must(t, fsys.Cut())
			m.cut()
			cuts++
			op = "cut"
			compare(t, fmt.Sprintf("step %d (%s), backing", step, op), fsys.Backing(), m)
		}
		compare(t, fmt.Sprintf("step %d (%s)", step, op), root, m)
	}
	t.Logf("%d steps, %d cuts", steps, cuts)
	if cuts == 0 {
		t.Fatal("no cut ran")
	}
}
