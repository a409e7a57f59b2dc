package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLatestCorruption damages the newest of three checkpoints (chk-3
// shares 000102.sst with chk-2; chk-1 stands alone) and checks what
// Latest restores, what it moves aside and what it says.
func TestLatestCorruption(t *testing.T) {
	keyed := func(name string) string { return filepath.Join("chk-3", keyedTask, name) }
	for _, tc := range []struct {
		name       string
		full       bool
		damage     func(t *testing.T, dir string)
		wantID     int64   // 0: none
		wantBroken []int64 // newest first
		wantPath   string  // of the first broken checkpoint's error, relative to dir
		wantReason string
		undetected bool // the damage stays (Verify(fast) cannot see it)
	}{
		{
			name:   "intact",
			full:   true,
			damage: func(*testing.T, string) {},
			wantID: 3,
		},
		{
			name:       "truncated _metadata",
			damage:     func(t *testing.T, dir string) { truncateFile(t, filepath.Join(dir, "chk-3", MetadataFile), 0.5) },
			wantID:     2,
			wantBroken: []int64{3},
			wantPath:   filepath.Join("chk-3", MetadataFile),
			wantReason: "trailer",
		},
		{
			name:       "empty _metadata",
			damage:     func(t *testing.T, dir string) { truncateFile(t, filepath.Join(dir, "chk-3", MetadataFile), 0) },
			wantID:     2,
			wantBroken: []int64{3},
			wantPath:   filepath.Join("chk-3", MetadataFile),
			wantReason: "trailer",
		},
		{
			name:       "flipped byte in _metadata",
			damage:     func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, "chk-3", MetadataFile), 100) },
			wantID:     2,
			wantBroken: []int64{3},
			wantPath:   filepath.Join("chk-3", MetadataFile),
			wantReason: "checksum mismatch",
		},
		{
			name: "_metadata of another checkpoint",
			damage: func(t *testing.T, dir string) {
				b, _ := os.ReadFile(filepath.Join(dir, "chk-2", MetadataFile))
				os.WriteFile(filepath.Join(dir, "chk-3", MetadataFile), b, 0o644)
			},
			wantID:     2,
			wantBroken: []int64{3},
			wantPath:   filepath.Join("chk-3", MetadataFile),
			wantReason: "id 2 in the directory of checkpoint 3",
		},
		{
			name:       "flipped byte in an SST, full verify",
			full:       true,
			damage:     func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, keyed("000103.sst")), 150_000) },
			wantID:     2,
			wantBroken: []int64{3},
			wantPath:   keyed("000103.sst"),
			wantReason: "crc32c",
		},
		{
			name:       "flipped byte in an SST, fast verify does not see it",
			damage:     func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, keyed("000103.sst")), 150_000) },
			wantID:     3,
			undetected: true,
		},
		{
			name:       "truncated SST, fast verify",
			damage:     func(t *testing.T, dir string) { truncateFile(t, filepath.Join(dir, keyed("000103.sst")), 0.5) },
			wantID:     2,
			wantBroken: []int64{3},
			wantPath:   keyed("000103.sst"),
			wantReason: "size 150000, metadata says 300000",
		},
		{
			name:       "missing file, fast verify",
			damage:     func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, keyed("MANIFEST-000005"))) },
			wantID:     2,
			wantBroken: []int64{3},
			wantPath:   keyed("MANIFEST-000005"),
			wantReason: "missing",
		},
		{
			name:       "flipped byte in the task state file, fast verify",
			damage:     func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, keyed(TaskStateFile)), -2) },
			wantID:     2,
			wantBroken: []int64{3},
			wantPath:   keyed(TaskStateFile),
			wantReason: "crc32c",
		},
		{
			name:       "flipped byte in MANIFEST, fast verify",
			damage:     func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, keyed("MANIFEST-000005")), 0) },
			wantID:     2,
			wantBroken: []int64{3},
			wantPath:   keyed("MANIFEST-000005"),
			wantReason: "crc32c",
		},
		{
			name:       "flipped byte in an SST shared with chk-2, full verify",
			full:       true,
			damage:     func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, keyed("000102.sst")), 7) },
			wantID:     1,
			wantBroken: []int64{3, 2},
			wantPath:   keyed("000102.sst"),
			wantReason: "crc32c",
		},
		{
			name: "every checkpoint damaged",
			damage: func(t *testing.T, dir string) {
				for _, chk := range []string{"chk-1", "chk-2", "chk-3"} {
					os.Remove(filepath.Join(dir, chk, sourceTask, TaskStateFile))
				}
			},
			wantBroken: []int64{3, 2, 1},
			wantPath:   filepath.Join("chk-3", sourceTask, TaskStateFile),
			wantReason: "missing",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			commit(t, s, 1, 0)
			commit(t, s, 2, 0)
			commit(t, s, 3, 2, "000102.sst")
			tc.damage(t, dir)

			s = openStore(t, dir)
			md, broken, err := s.Latest(tc.full)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantID == 0 && md != nil:
				t.Errorf("Latest = chk-%d, want none", md.ID)
			case tc.wantID != 0 && (md == nil || md.ID != tc.wantID):
				t.Errorf("Latest = %+v, want chk-%d", md, tc.wantID)
			}
			var ids []int64
			for _, b := range broken {
				ids = append(ids, b.ID)
				if want := s.CheckpointDir(b.ID) + ".broken"; b.Path != want {
					t.Errorf("chk-%d moved to %s, want %s", b.ID, b.Path, want)
				}
				if _, err := os.Stat(b.Path); err != nil {
					t.Error(err)
				}
				if _, err := os.Stat(s.CheckpointDir(b.ID)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("chk-%d still there: %v", b.ID, err)
				}
			}
			if !slices.Equal(ids, tc.wantBroken) {
				t.Fatalf("broken %v, want %v", ids, tc.wantBroken)
			}
			if len(broken) > 0 {
				ce := asCorrupt(t, broken[0].Reason)
				if want := filepath.Join(dir, tc.wantPath); ce.Path != want {
					t.Errorf("error names %s, want %s", ce.Path, want)
				}
				if !strings.Contains(ce.Reason, tc.wantReason) || !strings.Contains(broken[0].Reason.Error(), ce.Path) {
					t.Errorf("error %q, want it to name the path and say %q", broken[0].Reason, tc.wantReason)
				}
			}
			if tc.undetected {
				return
			}
			// Everything left is restorable and Latest is now stable.
			left := assertRestorable(t, dir)
			if tc.wantID != 0 && left[len(left)-1] != tc.wantID {
				t.Errorf("newest left is %d", left[len(left)-1])
			}
			if _, broken, err := openStore(t, dir).Latest(true); len(broken) > 0 || err != nil {
				t.Errorf("second Latest: broken %v, err %v", broken, err)
			}
		})
	}
}

func TestLatestStopsOnUnsupportedVersion(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	commit(t, s, 1, 0)
	if err := os.WriteFile(filepath.Join(s.CheckpointDir(1), MetadataFile), withTrailer(`{"version": 2}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	md, broken, err := s.Latest(false)
	if !errors.Is(err, ErrUnsupportedVersion) || md != nil || len(broken) != 0 {
		t.Fatalf("Latest = %v, %v, %v; want ErrUnsupportedVersion", md, broken, err)
	}
	if got := completed(t, s); !slices.Equal(got, []int64{1}) {
		t.Errorf("a checkpoint of a newer version was moved: Completed = %v", got)
	}
}

func TestLatestEmpty(t *testing.T) {
	md, broken, err := openStore(t, t.TempDir()).Latest(true)
	if md != nil || broken != nil || err != nil {
		t.Fatalf("Latest = %v, %v, %v", md, broken, err)
	}
}

// TestVerifyReportsFirstBadFile: with several bad files, Verify names the
// first in (task, file) order, whatever the parallel checks find first.
func TestVerifyReportsFirstBadFile(t *testing.T) {
	s := openStore(t, t.TempDir())
	md := commit(t, s, 1, 0)
	for _, name := range []string{"CURRENT", "OPTIONS-000007", "000101.sst"} {
		flipByte(t, filepath.Join(s.TaskDir(1, keyedTask), name), 0)
	}
	os.Remove(filepath.Join(s.TaskDir(1, sourceTask), TaskStateFile))
	for range 20 {
		ce := asCorrupt(t, s.Verify(md, true))
		if want := filepath.Join(s.TaskDir(1, keyedTask), "000101.sst"); ce.Path != want {
			t.Fatalf("Verify names %s, want %s", ce.Path, want)
		}
	}
}
