package upload

import (
	"testing"
)

// TestCloseBeforeStart: Close before Start neither panics nor blocks, is
// idempotent, and a Start after it starts nothing (goleak in TestMain
// would see the loop). Close after Start stops the loop, twice too.
func TestCloseBeforeStart(t *testing.T) {
	l := newLocal(t)
	l.addSST("w-0", 100)
	l.checkpoint()
	u := newUploader(t, NewMemStore(), l, t.TempDir(), nil)
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	u.Start()
	if err := u.SweepNow(t.Context()); err == nil {
		t.Fatal("SweepNow on a closed uploader: no error")
	}
	if got := u.Stats().Uploads; got != 0 {
		t.Fatalf("Start after Close uploaded %d checkpoints", got)
	}

	u2 := newUploader(t, NewMemStore(), l, t.TempDir(), nil)
	u2.Start()
	u2.Start()
	waitRemote(t, u2, 1)
	for range 2 {
		if err := u2.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := u2.SweepNow(t.Context()); err == nil {
		t.Fatal("SweepNow after Close: no error")
	}
}
