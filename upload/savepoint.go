package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/eddy-stream/eddy/storage/fileutil"
	"github.com/eddy-stream/eddy/storage/savepoint"
)

// Savepoints are stored under their own prefix of the appliance directory,
// savepoints/<name>/<task>/<file> and savepoints/<name>/_metadata (the
// commit point, put last), as they are on disk (identity encoding: the
// full snapshots are already snappy-compressed). Retention and the orphan
// sweep only ever delete checkpoint (chk-N/) and shared objects, so a
// savepoint is never pruned from the remote.

const savepointsDir = "savepoints"

// SavepointRel is the directory of savepoint name, relative to the
// appliance: savepoints/<name>/.
func SavepointRel(name string) string { return savepointsDir + "/" + name + "/" }

// UploadSavepoint puts the local savepoint in dir (md its metadata) to st
// under l: every file, read and checked against md's size, then
// _metadata. A savepoint whose remote _metadata already exists is left
// alone.
func UploadSavepoint(ctx context.Context, st Store, l Layout, dir string, md *savepoint.Metadata) error {
	metaKey := l.Key(SavepointRel(md.Name) + savepoint.MetadataFile)
	if _, err := st.Stat(ctx, metaKey); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("upload: savepoint %s: %w", md.Name, err)
	}
	put := func(rel, path string, want int64) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if want >= 0 && fi.Size() != want {
			return fmt.Errorf("%s has %d bytes, the savepoint's _metadata says %d", path, fi.Size(), want)
		}
		return st.Put(ctx, l.Key(rel), f, fi.Size())
	}
	for task, ts := range md.Tasks {
		for _, f := range ts.Files {
			if err := put(SavepointRel(md.Name)+task+"/"+f.Name, filepath.Join(dir, task, f.Name), f.Size); err != nil {
				return fmt.Errorf("upload: savepoint %s: %w", md.Name, err)
			}
		}
	}
	if err := put(SavepointRel(md.Name)+savepoint.MetadataFile, filepath.Join(dir, savepoint.MetadataFile), -1); err != nil {
		return fmt.Errorf("upload: savepoint %s: %w", md.Name, err)
	}
	return nil
}

// RemoteSavepoint is a savepoint in the remote.
type RemoteSavepoint struct {
	Name     string
	Key      string // of its directory, relative to the store root
	Metadata *savepoint.Metadata
	Size     int64 // stored bytes of its objects
	Err      error // its _metadata does not read or decode
}

// ListSavepoints lists the committed savepoints (those with a _metadata)
// of appliance l in st, by name.
func ListSavepoints(ctx context.Context, st Store, l Layout) ([]RemoteSavepoint, error) {
	objs, err := st.List(ctx, l.Key(savepointsDir+"/"))
	if err != nil {
		return nil, fmt.Errorf("upload: list savepoints: %w", err)
	}
	sizes := map[string]int64{}
	var names []string
	for _, oi := range objs {
		rest := strings.TrimPrefix(l.Rel(oi.Key), savepointsDir+"/")
		name, file, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		sizes[name] += oi.Size
		if file == savepoint.MetadataFile {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []RemoteSavepoint
	for _, name := range names {
		rs := RemoteSavepoint{Name: name, Key: l.Key(SavepointRel(name)), Size: sizes[name]}
		key := rs.Key + savepoint.MetadataFile
		rc, err := st.Get(ctx, key)
		if err == nil {
			var data []byte
			data, err = io.ReadAll(io.LimitReader(rc, 64<<20))
			rc.Close()
			if err == nil {
				rs.Metadata, err = savepoint.Decode(st.String()+"/"+key, data)
			}
		}
		rs.Err = err
		out = append(out, rs)
	}
	return out, nil
}

// DownloadSavepoint fetches savepoint name of appliance l from st into
// local (the data_dir's savepoint directory) through fsys, and returns its
// metadata. Every file is checked against the remote _metadata (size and
// CRC32C) before it is committed, and the savepoint is committed locally
// (its _metadata written) only when all are there, so an interrupted
// download resumes: the files already on disk that match are kept. A
// savepoint already complete locally is not fetched again. A remote
// without the savepoint is ErrNotFound. fsys nil: the OS.
func DownloadSavepoint(ctx context.Context, st Store, l Layout, name string, local *savepoint.Store, fsys fileutil.FS) (*savepoint.Metadata, error) {
	if fsys == nil {
		fsys = fileutil.OSFS{}
	}
	if err := savepoint.ValidName(name); err != nil {
		return nil, fmt.Errorf("upload: savepoint name %w", err)
	}
	dir := local.Dir(name)
	if md, err := savepoint.LoadFS(fsys, dir); err == nil {
		return md, nil
	}
	metaKey := l.Key(SavepointRel(name) + savepoint.MetadataFile)
	rc, err := st.Get(ctx, metaKey)
	if err != nil {
		return nil, fmt.Errorf("upload: savepoint %s: %w", name, err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("upload: savepoint %s: %w", name, err)
	}
	md, err := savepoint.Decode(st.String()+"/"+metaKey, data)
	if err != nil {
		return nil, err
	}
	if md.Name != name {
		return nil, fmt.Errorf("%w: %s names savepoint %q", ErrRemoteCorrupt, metaKey, md.Name)
	}
	for _, task := range slices.Sorted(maps.Keys(md.Tasks)) {
		tdir := filepath.Join(dir, task)
		if err := fileutil.CreateDirAllFS(fsys, tdir); err != nil {
			return nil, fmt.Errorf("upload: savepoint %s: %w", name, err)
		}
		for _, f := range md.Tasks[task].Files {
			path := filepath.Join(tdir, f.Name)
			if haveFile(fsys, path, f) {
				continue
			}
			key := l.Key(SavepointRel(name) + task + "/" + f.Name)
			if _, err := fetch(ctx, st, fsys, key, Object{Encoding: EncodingIdentity}, f, path, nil); err != nil {
				return nil, fmt.Errorf("upload: savepoint %s: %w", name, err)
			}
		}
	}
	if err := local.Commit(md); err != nil {
		return nil, err
	}
	return md, nil
}
