package checkpoint

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

// The task state file chk-N/<task>/_task holds a task's non-keyed state
// (watermarks, source offsets, staged sink output, heap timers) as opaque
// bytes behind a 24-byte header, all integers little-endian:
//
//	0   4  magic "ETSK"
//	4   1  format version (1)
//	5   3  reserved, zero
//	8   8  payload length
//	16  4  CRC32C of the payload
//	20  4  CRC32C of bytes 0..19
//	24     payload
const (
	taskMagic      = "ETSK"
	taskVersion    = 1
	taskHeaderSize = 24
)

// WriteTaskState writes data as the task state file of taskDir (creating
// taskDir if needed) through fsys (nil: the OS), durably: tmp file, fsync,
// rename, fsync taskDir. It returns the file's entry for TaskState.Files.
//
// For a native task, call it after RocksDB's checkpoint has created
// taskDir: RocksDB refuses to create a checkpoint into an existing
// directory.
func WriteTaskState(fsys fileutil.FS, taskDir string, data []byte) (File, error) {
	if fsys == nil {
		fsys = fileutil.OSFS{}
	}
	frame := make([]byte, taskHeaderSize, taskHeaderSize+len(data))
	copy(frame, taskMagic)
	frame[4] = taskVersion
	binary.LittleEndian.PutUint64(frame[8:], uint64(len(data)))
	binary.LittleEndian.PutUint32(frame[16:], crc32.Checksum(data, castagnoli))
	binary.LittleEndian.PutUint32(frame[20:], crc32.Checksum(frame[:20], castagnoli))
	frame = append(frame, data...)

	if err := fileutil.CreateDirAllFS(fsys, taskDir); err != nil {
		return File{}, fmt.Errorf("checkpoint: write task state: %w", err)
	}
	if err := fileutil.WriteFileAtomicFS(fsys, filepath.Join(taskDir, TaskStateFile), frame, 0o644); err != nil {
		return File{}, fmt.Errorf("checkpoint: write task state: %w", err)
	}
	return File{Name: TaskStateFile, Size: int64(len(frame)), CRC32C: crc32.Checksum(frame, castagnoli)}, nil
}

// ReadTaskState reads and checks the task state file at path and returns
// its payload (see ReadTaskStateFS).
func ReadTaskState(path string) ([]byte, error) {
	return ReadTaskStateFS(fileutil.OSFS{}, path)
}

// ReadTaskStateFS reads the task state file at path through fsys and
// returns its payload. A file that is short, has a bad header, a wrong
// checksum or bytes after the payload is a *fileutil.CorruptionError
// naming path and the offset where the damage shows; a newer format
// version is ErrUnsupportedVersion.
func ReadTaskStateFS(fsys fileutil.FS, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read task state: %w", err)
	}
	data, err := io.ReadAll(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read task state %s: %w", path, err)
	}
	return decodeTaskState(path, data)
}

func decodeTaskState(path string, b []byte) ([]byte, error) {
	corrupt := func(off int, format string, args ...any) error {
		return &fileutil.CorruptionError{Path: path, Offset: int64(off), Reason: fmt.Sprintf(format, args...)}
	}
	n := len(b)
	switch {
	case n < len(taskMagic) || string(b[:len(taskMagic)]) != taskMagic:
		if n < len(taskMagic) && string(b) == taskMagic[:n] {
			return nil, corrupt(n, "truncated header (%d of %d bytes)", n, taskHeaderSize)
		}
		return nil, corrupt(0, "not a task state file (bad magic)")
	case n < taskHeaderSize:
		return nil, corrupt(n, "truncated header (%d of %d bytes)", n, taskHeaderSize)
	case crc32.Checksum(b[:20], castagnoli) != binary.LittleEndian.Uint32(b[20:]):
		return nil, corrupt(0, "header checksum mismatch")
	case b[4] != taskVersion:
		return nil, fmt.Errorf("%w: %s version %d (this eddy reads version %d; written by a newer eddy?)",
			ErrUnsupportedVersion, path, b[4], taskVersion)
	}
	size := binary.LittleEndian.Uint64(b[8:])
	have := uint64(n - taskHeaderSize)
	switch {
	case size > have:
		return nil, corrupt(n, "truncated payload (%d of %d bytes)", have, size)
	case size < have:
		return nil, corrupt(taskHeaderSize+int(size), "%d bytes after the payload", have-size)
	}
	payload := b[taskHeaderSize:]
	if got, want := crc32.Checksum(payload, castagnoli), binary.LittleEndian.Uint32(b[16:]); got != want {
		return nil, corrupt(taskHeaderSize, "payload checksum mismatch: header says %08x, payload has %08x", want, got)
	}
	return payload, nil
}
