package checkpoint

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

const (
	chkPrefix     = "chk-"
	brokenSuffix  = ".broken"
	deleteSuffix  = ".delete" + tmpSuffix // chk-N.delete.tmp: a checkpoint being removed
	maxMetadata   = 256 << 20
	defaultPerm   = 0o644
	retainBrokens = 3 // Prune keeps this many *.broken directories
)

// Store is the local checkpoint store rooted at one directory. See the
// package documentation for its invariants.
type Store struct {
	dir string
	fs  fileutil.FS
	log *slog.Logger
	// mu serializes changes to the set of checkpoint directories (Begin,
	// Commit, Abort, MarkBroken, Prune, MarkPublished).
	mu sync.Mutex
}

// BrokenCheckpoint is a checkpoint Latest found damaged and moved aside.
type BrokenCheckpoint struct {
	ID     int64
	Path   string // where it is now: chk-N.broken or chk-N.broken.M
	Reason error  // why: a *fileutil.CorruptionError naming the file
}

// Open opens the store in dir, creating dir (and its parents) if needed.
// fsys is the file system to use (nil: the OS, logging slow fsyncs to
// log); log may be nil. Open removes what a crash leaves behind and logs
// each removal: *.tmp files and directories (including those inside
// completed checkpoints) and every chk-N directory without _metadata.
// It never touches *.broken directories.
func Open(dir string, fsys fileutil.FS, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if fsys == nil {
		fsys = fileutil.OSFS{Logger: log}
	}
	s := &Store{dir: filepath.Clean(dir), fs: fsys, log: log}
	if err := fileutil.CreateDirAllFS(fsys, s.dir); err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", dir, err)
	}
	if err := s.removeLeftovers(); err != nil {
		return nil, fmt.Errorf("checkpoint: open %s: %w", dir, err)
	}
	return s, nil
}

func (s *Store) removeLeftovers() error {
	entries, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(s.dir, name)
		if _, _, broken := parseBroken(name); broken {
			continue
		}
		if strings.HasSuffix(name, tmpSuffix) {
			if err := s.fs.RemoveAll(p); err != nil {
				return err
			}
			s.log.Info("removed leftover temporary file", "path", p)
			removed = true
			continue
		}
		id, ok := parseCheckpointDir(name)
		if !ok || !e.IsDir() {
			continue
		}
		complete, err := s.exists(filepath.Join(p, MetadataFile))
		if err != nil {
			return err
		}
		if !complete {
			if err := s.fs.RemoveAll(p); err != nil {
				return err
			}
			s.log.Info("removed incomplete checkpoint", "checkpoint", id, "path", p)
			removed = true
			continue
		}
		tmps, err := fileutil.RemoveTmpFS(s.fs, p)
		for _, t := range tmps {
			s.log.Info("removed leftover temporary file", "path", t)
		}
		if err != nil {
			return err
		}
	}
	if removed {
		return s.fs.SyncDir(s.dir)
	}
	return nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// CheckpointDir returns the directory of checkpoint id: <dir>/chk-<id>.
func (s *Store) CheckpointDir(id int64) string {
	return filepath.Join(s.dir, chkPrefix+strconv.FormatInt(id, 10))
}

// TaskDir returns the directory of task in checkpoint id:
// <dir>/chk-<id>/<task>.
func (s *Store) TaskDir(id int64, task string) string {
	return filepath.Join(s.CheckpointDir(id), task)
}

// Begin creates the directory of checkpoint id; Commit makes it durable
// (a crash before Commit may lose it, which loses nothing). It fails with
// ErrExists if checkpoint id is completed; a directory left by an earlier
// attempt at id that never completed is removed first.
func (s *Store) Begin(id int64) error {
	if id < 1 {
		return fmt.Errorf("checkpoint: begin: id %d, want ≥ 1", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.CheckpointDir(id)
	done, err := s.exists(filepath.Join(p, MetadataFile))
	if err != nil {
		return fmt.Errorf("checkpoint: begin %d: %w", id, err)
	}
	if done {
		return fmt.Errorf("%w: chk-%d", ErrExists, id)
	}
	stale, err := s.exists(p)
	if err != nil {
		return fmt.Errorf("checkpoint: begin %d: %w", id, err)
	}
	if stale {
		if err := s.fs.RemoveAll(p); err != nil {
			return fmt.Errorf("checkpoint: begin %d: remove stale directory: %w", id, err)
		}
		s.log.Warn("removed stale incomplete checkpoint directory", "checkpoint", id, "path", p)
	}
	// Not made durable here: Begin is on the checkpoint's trigger path
	// (its time is in every task's start delay) and a chk-N lost to a
	// crash before Commit is an incomplete checkpoint, which is removed
	// anyway. Commit fsyncs the store's directory before _metadata.
	if err := s.fs.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("checkpoint: begin %d: %w", id, err)
	}
	return nil
}

// Commit completes checkpoint md.ID. It sets md.Version to Version if it
// is 0 and checks md (Validate), then checks the checkpoint directory
// against md: every listed file exists with its recorded size, every task
// directory holds exactly its listed files (a task with no files may have
// no directory), and chk-N holds no directory of an unlisted task. It
// fsyncs the task directories and chk-N, and then writes _metadata
// atomically: tmp, fsync, rename, fsync chk-N.
//
// Commit does not read the files: their CRC32C values are taken from md.
// When Commit fails, the checkpoint is either not completed or, if only
// the last fsync failed, completed and intact; the caller should Abort it.
func (s *Store) Commit(md *Metadata) error {
	if md.Version == 0 {
		md.Version = Version
	}
	if err := md.Validate(); err != nil {
		return fmt.Errorf("checkpoint: commit %d: %w", md.ID, err)
	}
	data, err := EncodeMetadata(md)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.CheckpointDir(md.ID)
	done, err := s.exists(filepath.Join(p, MetadataFile))
	if err != nil {
		return fmt.Errorf("checkpoint: commit %d: %w", md.ID, err)
	}
	if done {
		return fmt.Errorf("%w: chk-%d", ErrExists, md.ID)
	}
	dirs, err := s.checkLayout(md)
	if err != nil {
		return fmt.Errorf("checkpoint: commit %d: %w", md.ID, err)
	}
	for _, d := range append(dirs, p, s.dir) { // s.dir: chk-N's entry (see Begin)
		if err := s.fs.SyncDir(d); err != nil {
			return fmt.Errorf("checkpoint: commit %d: %w", md.ID, err)
		}
	}
	if err := fileutil.WriteFileAtomicFS(s.fs, filepath.Join(p, MetadataFile), data, defaultPerm); err != nil {
		return fmt.Errorf("checkpoint: commit %d: write %s: %w", md.ID, MetadataFile, err)
	}
	s.log.Debug("checkpoint committed", "checkpoint", md.ID, "tasks", len(md.Tasks), "state_size", md.StateSize())
	return nil
}

// checkLayout compares checkpoint md.ID's directory with md and returns
// the task directories present.
func (s *Store) checkLayout(md *Metadata) ([]string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidMetadata, fmt.Sprintf(format, args...))
	}
	p := s.CheckpointDir(md.ID)
	entries, err := s.fs.ReadDir(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, bad("no directory %s (Begin not called, or aborted)", p)
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if _, listed := md.Tasks[e.Name()]; !strings.HasSuffix(e.Name(), tmpSuffix) && (!listed || !e.IsDir()) {
			return nil, bad("%s is not the directory of a listed task", filepath.Join(p, e.Name()))
		}
	}
	var dirs []string
	for _, task := range md.TaskNames() {
		t := md.Tasks[task]
		dir := s.TaskDir(md.ID, task)
		entries, err := s.fs.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) && len(t.Files) == 0 {
			continue
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, bad("task %s: no directory %s", task, dir)
		}
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, dir)
		listed := make(map[string]bool, len(t.Files))
		for _, f := range t.Files {
			listed[f.Name] = true
		}
		for _, e := range entries {
			if !listed[e.Name()] && !strings.HasSuffix(e.Name(), tmpSuffix) {
				return nil, bad("task %s: %s is not listed", task, filepath.Join(dir, e.Name()))
			}
		}
		for _, f := range t.Files {
			path := filepath.Join(dir, f.Name)
			fi, err := s.fs.Stat(path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return nil, bad("task %s: %s is missing", task, path)
			case err != nil:
				return nil, err
			case !fi.Mode().IsRegular():
				return nil, bad("task %s: %s is not a regular file", task, path)
			case fi.Size() != f.Size:
				return nil, bad("task %s: %s has %d bytes, metadata says %d", task, path, fi.Size(), f.Size)
			}
		}
	}
	return dirs, nil
}

// Abort removes checkpoint id entirely, completed or not; an id without a
// directory is not an error. The directory is first renamed to a *.tmp
// name and the rename made durable, so a crash during the removal leaves
// no partial checkpoint, only a leftover for Open.
func (s *Store) Abort(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.remove(id); err != nil {
		return fmt.Errorf("checkpoint: abort %d: %w", id, err)
	}
	return nil
}

func (s *Store) remove(id int64) error {
	p := s.CheckpointDir(id)
	there, err := s.exists(p)
	if err != nil || !there {
		return err
	}
	tmp := p + deleteSuffix
	if err := s.fs.RemoveAll(tmp); err != nil {
		return err
	}
	if err := fileutil.RenameFS(s.fs, p, tmp); err != nil {
		return err
	}
	return s.fs.RemoveAll(tmp)
}

// Completed returns the ids of the completed checkpoints (those with
// _metadata), ascending.
func (s *Store) Completed() ([]int64, error) {
	entries, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list: %w", err)
	}
	var ids []int64
	for _, e := range entries {
		id, ok := parseCheckpointDir(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		done, err := s.exists(filepath.Join(s.dir, e.Name(), MetadataFile))
		if err != nil {
			return nil, fmt.Errorf("checkpoint: list: %w", err)
		}
		if done {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Load reads and checks the _metadata of checkpoint id (see
// DecodeMetadata). Damage is a *fileutil.CorruptionError naming the
// file; a metadata id that differs from id is damage too.
func (s *Store) Load(id int64) (*Metadata, error) {
	p := filepath.Join(s.CheckpointDir(id), MetadataFile)
	f, err := s.fs.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: load %d: %w", id, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMetadata+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: load %d: %w", id, err)
	}
	if len(data) > maxMetadata {
		return nil, &fileutil.CorruptionError{Path: p, Offset: maxMetadata, Reason: "larger than 256 MiB"}
	}
	md, err := DecodeMetadata(data)
	if ce := (*fileutil.CorruptionError)(nil); errors.As(err, &ce) {
		ce.Path = p
	}
	if err != nil {
		return nil, err
	}
	if md.ID != id {
		return nil, &fileutil.CorruptionError{Path: p, Offset: -1, Reason: fmt.Sprintf("id %d in the directory of checkpoint %d", md.ID, id)}
	}
	return md, nil
}

// Latest returns the newest completed checkpoint that loads and verifies
// (Verify with full = verifyFull). Each newer one that is damaged (a
// *fileutil.CorruptionError) is moved aside with MarkBroken and reported
// in broken. It returns (nil, broken, nil) when no checkpoint is left. Any other
// error, such as ErrUnsupportedVersion or a permission error, stops the
// search: it says nothing about the checkpoint itself.
func (s *Store) Latest(verifyFull bool) (*Metadata, []BrokenCheckpoint, error) {
	ids, err := s.Completed()
	if err != nil {
		return nil, nil, err
	}
	var broken []BrokenCheckpoint
	for _, id := range slices.Backward(ids) {
		md, err := s.Load(id)
		if err == nil {
			err = s.Verify(md, verifyFull)
		}
		if err == nil {
			return md, broken, nil
		}
		if !fileutil.IsCorruption(err) {
			return nil, broken, fmt.Errorf("checkpoint: check chk-%d: %w", id, err)
		}
		to, merr := s.MarkBroken(id, err)
		if merr != nil {
			return nil, broken, merr
		}
		broken = append(broken, BrokenCheckpoint{ID: id, Path: to, Reason: err})
	}
	return nil, broken, nil
}

// MarkBroken moves checkpoint id aside to chk-N.broken (chk-N.broken.M
// if that exists; see fileutil.RenameBrokenFS), logs why at warn level,
// and returns the new path. The files are kept for a person to inspect.
func (s *Store) MarkBroken(id int64, reason error) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	to, err := fileutil.RenameBrokenFS(s.fs, s.CheckpointDir(id))
	if err != nil {
		return to, fmt.Errorf("checkpoint: mark %d broken: %w", id, err)
	}
	s.log.Warn("checkpoint is damaged, moved aside", "checkpoint", id, "path", to, "reason", reason)
	return to, nil
}

// Prune removes the completed checkpoints older than the newest keep
// (keep ≥ 1), except those for which protect (if not nil) returns true,
// and returns the ids removed, ascending. Removal is crash-safe as in
// Abort. It also deletes all but the newest three *.broken directories
// (by checkpoint id). protect is called with the store locked and must not
// call Begin, Commit, Abort, MarkBroken, Prune or MarkPublished.
func (s *Store) Prune(keep int, protect func(id int64) bool) ([]int64, error) {
	if keep < 1 {
		return nil, fmt.Errorf("checkpoint: prune: keep %d, want ≥ 1", keep)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, err := s.Completed()
	if err != nil {
		return nil, err
	}
	var removed []int64
	for _, id := range ids[:max(0, len(ids)-keep)] {
		if protect != nil && protect(id) {
			continue
		}
		if err := s.remove(id); err != nil {
			return removed, fmt.Errorf("checkpoint: prune %d: %w", id, err)
		}
		s.log.Debug("removed checkpoint", "checkpoint", id)
		removed = append(removed, id)
	}

	entries, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return removed, fmt.Errorf("checkpoint: prune: %w", err)
	}
	type brokenDir struct {
		name  string
		id, n int64
	}
	var brokens []brokenDir
	for _, e := range entries {
		if id, n, ok := parseBroken(e.Name()); ok {
			brokens = append(brokens, brokenDir{e.Name(), id, n})
		}
	}
	slices.SortFunc(brokens, func(a, b brokenDir) int {
		return cmp.Or(cmp.Compare(b.id, a.id), cmp.Compare(b.n, a.n))
	})
	for _, b := range brokens[min(len(brokens), retainBrokens):] {
		p := filepath.Join(s.dir, b.name)
		if err := s.fs.RemoveAll(p); err != nil {
			return removed, fmt.Errorf("checkpoint: prune: %w", err)
		}
		s.log.Info("removed old broken checkpoint", "path", p)
	}
	return removed, nil
}

// MarkPublished records, durably, that the staged output of every sink of
// completed checkpoint id has been published (the legacy, all-sinks form
// of chk-N/_published).
func (s *Store) MarkPublished(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.completed(id); err != nil {
		return fmt.Errorf("checkpoint: mark %d published: %w", id, err)
	}
	data := []byte("published " + time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	if err := fileutil.WriteFileAtomicFS(s.fs, filepath.Join(s.CheckpointDir(id), PublishedFile), data, defaultPerm); err != nil {
		return fmt.Errorf("checkpoint: mark %d published: %w", id, err)
	}
	return nil
}

// MarkSinkPublished records, durably, that sink has confirmed the staged
// output of every checkpoint <= id. It rewrites chk-N/_published
// atomically with one `sink <quoted name>` line per sink confirmed so far,
// and a last line `complete` once every name in all is listed.
func (s *Store) MarkSinkPublished(id int64, sink string, all []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.completed(id); err != nil {
		return fmt.Errorf("checkpoint: mark %d published to %s: %w", id, sink, err)
	}
	p, err := s.readPublished(id)
	if err != nil {
		return fmt.Errorf("checkpoint: mark %d published to %s: %w", id, sink, err)
	}
	if p.All {
		return nil
	}
	if !slices.Contains(p.Sinks, sink) {
		p.Sinks = append(p.Sinks, sink)
	}
	var b strings.Builder
	for _, n := range p.Sinks {
		b.WriteString("sink " + strconv.Quote(n) + "\n")
	}
	complete := true
	for _, n := range all {
		complete = complete && slices.Contains(p.Sinks, n)
	}
	if complete {
		b.WriteString("complete\n")
	}
	if err := fileutil.WriteFileAtomicFS(s.fs, filepath.Join(s.CheckpointDir(id), PublishedFile), []byte(b.String()), defaultPerm); err != nil {
		return fmt.Errorf("checkpoint: mark %d published to %s: %w", id, sink, err)
	}
	return nil
}

// Published is what chk-N/_published says: All when every sink confirmed
// the checkpoint's output (the legacy form, or `complete`), else the names
// of the sinks that did.
type Published struct {
	All   bool
	Sinks []string
}

// Has reports whether sink confirmed the output.
func (p Published) Has(sink string) bool { return p.All || slices.Contains(p.Sinks, sink) }

// Published reports whether every sink confirmed the output of checkpoint
// id. It reports false when it cannot tell, so that the output is
// published again (under its stable result id) rather than lost.
func (s *Store) Published(id int64) bool {
	return s.PublishedSinks(id).All
}

// PublishedSinks reports which sinks confirmed the output of checkpoint id;
// when the file cannot be read or parsed it reports none, so that the
// output is published again rather than lost.
func (s *Store) PublishedSinks(id int64) Published {
	p, err := s.readPublished(id)
	if err != nil {
		s.log.Warn("cannot read published marker; its output will be published again", "checkpoint", id, "err", err)
		return Published{}
	}
	return p
}

func (s *Store) readPublished(id int64) (Published, error) {
	f, err := s.fs.OpenFile(filepath.Join(s.CheckpointDir(id), PublishedFile), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return Published{}, nil
	}
	if err != nil {
		return Published{}, err
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return Published{}, err
	}
	return ParsePublished(data)
}

// ParsePublished decodes the content of a _published file.
func ParsePublished(data []byte) (Published, error) {
	var p Published
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		switch {
		case i == 0 && strings.HasPrefix(line, "published "):
			return Published{All: true}, nil
		case line == "complete":
			p.All = true
		case strings.HasPrefix(line, "sink "):
			n, err := strconv.Unquote(strings.TrimPrefix(line, "sink "))
			if err != nil {
				return Published{}, fmt.Errorf("%s line %d: bad sink name: %w", PublishedFile, i+1, err)
			}
			p.Sinks = append(p.Sinks, n)
		case line == "" && i == 0:
		default:
			return Published{}, fmt.Errorf("%s line %d: unknown line %q", PublishedFile, i+1, line)
		}
	}
	return p, nil
}

// completed returns an error unless id is a completed checkpoint.
func (s *Store) completed(id int64) error {
	done, err := s.exists(filepath.Join(s.CheckpointDir(id), MetadataFile))
	if err != nil {
		return err
	}
	if !done {
		return errors.New("not a completed checkpoint")
	}
	return nil
}

// exists reports whether path exists; an error other than "does not
// exist" is returned, never taken for absence.
func (s *Store) exists(path string) (bool, error) {
	_, err := s.fs.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// parseCheckpointDir parses "chk-<id>" with id ≥ 1 in canonical decimal.
func parseCheckpointDir(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, chkPrefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || id < 1 || strconv.FormatInt(id, 10) != digits {
		return 0, false
	}
	return id, true
}

// parseBroken parses "chk-<id>.broken" (n = 0) and "chk-<id>.broken.<n>".
func parseBroken(name string) (id, n int64, ok bool) {
	i := strings.LastIndex(name, brokenSuffix)
	if i < 0 {
		return 0, 0, false
	}
	if rest := name[i+len(brokenSuffix):]; rest != "" {
		digits, ok := strings.CutPrefix(rest, ".")
		if !ok {
			return 0, 0, false
		}
		var err error
		if n, err = strconv.ParseInt(digits, 10, 64); err != nil || n < 1 {
			return 0, 0, false
		}
	}
	id, ok = parseCheckpointDir(name[:i])
	return id, n, ok
}
