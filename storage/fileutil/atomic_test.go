package fileutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestAtomicFileCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := CreateAtomic(OSFS{}, p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("before commit: %q", b)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := a.Abort(); err != nil {
		t.Fatalf("abort after commit: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("after commit: %q", b)
	}
	a, err = CreateAtomic(OSFS{}, p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = a.Write([]byte("discarded"))
	if err := a.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tmp left after abort: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("after abort: %q", b)
	}
}

func TestAtomicFileEveryFailureLeavesOldOrNew(t *testing.T) {
	for failAt := 0; ; failAt++ {
		dir := t.TempDir()
		p := filepath.Join(dir, "x")
		if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		efs := NewErrorFS(OSFS{}, failAt)
		err := func() error {
			a, err := CreateAtomic(efs, p, 0o644)
			if err != nil {
				return err
			}
			defer a.Abort()
			if _, err := a.Write([]byte("new")); err != nil {
				return err
			}
			return a.Commit()
		}()
		b, _ := os.ReadFile(p)
		if s := string(b); s != "old" && s != "new" {
			t.Fatalf("failAt %d: content %q", failAt, s)
		}
		if err == nil && string(b) != "new" {
			t.Fatalf("failAt %d: committed but content %q", failAt, b)
		}
		if !efs.Injected() {
			break
		}
	}
}

func TestFlockNamesHolder(t *testing.T) {
	p := filepath.Join(t.TempDir(), "LOCK")
	l, err := Flock(p)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description, so a second Flock in
	// this process would succeed; another process must see the lock.
	if os.Getenv("FLOCK_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFlockChild$", "-test.v")
		cmd.Env = append(os.Environ(), "FLOCK_CHILD="+p)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Flock(p)
	if err != nil {
		t.Fatalf("relock after release: %v", err)
	}
	_ = l2.Release()
}

func TestFlockChild(t *testing.T) {
	p := os.Getenv("FLOCK_CHILD")
	if p == "" {
		t.Skip("run by TestFlockNamesHolder")
	}
	_, err := Flock(p)
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Fatalf("want LockedError, got %v", err)
	}
	if le.PID != os.Getppid() {
		t.Fatalf("holder pid %d, want %d", le.PID, os.Getppid())
	}
}
