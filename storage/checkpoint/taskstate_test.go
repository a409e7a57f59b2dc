package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eddy-stream/eddy/storage/fileutil"
)

func TestTaskStateRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"small", []byte(`{"watermark":1700000000000}`)},
		{"2 MiB", content("timers", 2<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "chk-1", "source-readings") // created
			f, err := WriteTaskState(nil, dir, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, TaskStateFile)
			crc, size, err := ChecksumFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := (File{Name: TaskStateFile, Size: size, CRC32C: crc}); f != want {
				t.Errorf("WriteTaskState returned %+v, want %+v", f, want)
			}
			if size != int64(taskHeaderSize+len(tc.data)) {
				t.Errorf("file has %d bytes for %d of payload", size, len(tc.data))
			}
			got, err := ReadTaskState(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.data) {
				t.Error("payload differs")
			}
			if names := entries(t, dir); len(names) != 1 {
				t.Errorf("task dir holds %v", names)
			}
		})
	}
}

func TestTaskStateCorruption(t *testing.T) {
	payload := []byte("0123456789abcdefghij") // 20 bytes, file 44
	for _, tc := range []struct {
		name       string
		damage     func(b []byte) []byte
		wantErr    error // errors.Is; nil: a *fileutil.CorruptionError
		wantOffset int64
		wantReason string
	}{
		{"empty", func(b []byte) []byte { return b[:0] }, nil, 0, "truncated header"},
		{"truncated in the magic", func(b []byte) []byte { return b[:2] }, nil, 2, "truncated header"},
		{"truncated in the header", func(b []byte) []byte { return b[:10] }, nil, 10, "truncated header"},
		{"truncated payload", func(b []byte) []byte { return b[:30] }, nil, 30, "truncated payload (6 of 20 bytes)"},
		{"bad magic", func(b []byte) []byte { b[1] = 'X'; return b }, nil, 0, "bad magic"},
		{"not a task state file", func([]byte) []byte { return []byte("{}") }, nil, 0, "bad magic"},
		{"flipped length", func(b []byte) []byte { b[8] ^= 1; return b }, nil, 0, "header checksum"},
		{"flipped header checksum", func(b []byte) []byte { b[21] ^= 1; return b }, nil, 0, "header checksum"},
		{"flipped payload byte", func(b []byte) []byte { b[40] ^= 1; return b }, nil, 24, "payload checksum"},
		{"trailing bytes", func(b []byte) []byte { return append(b, 0, 0) }, nil, 44, "2 bytes after the payload"},
		{"newer version", func(b []byte) []byte {
			b[4] = 2
			binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
			return b
		}, ErrUnsupportedVersion, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := WriteTaskState(nil, dir, payload); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, TaskStateFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(b), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = ReadTaskState(path)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || fileutil.IsCorruption(err) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			ce := asCorrupt(t, err)
			if ce.Path != path || ce.Offset != tc.wantOffset || !strings.Contains(ce.Reason, tc.wantReason) {
				t.Errorf("got %v; want %s at offset %d: %q", err, path, tc.wantOffset, tc.wantReason)
			}
		})
	}
	if _, err := ReadTaskState(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}
