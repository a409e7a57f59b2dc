package remote

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/notifytest"
)

// TestReplacedBoxWaitsForRemote: the disk of a box dies (data dir wiped)
// and its S3 server is down when the replacement starts. With
// upload.restore: wait (the default) the box keeps trying the remote well
// past restore_timeout (shortened to 1 s here; it bounds only
// empty_if_unreachable), is not READY, publishes nothing, says "waiting
// for remote …" in STATUS= and the overview, and sends
// EXTEND_TIMEOUT_USEC. When the server is back it restores the remote
// checkpoint, and the results equal an uninterrupted run's: no partial
// window was published under a real id.
func TestReplacedBoxWaitsForRemote(t *testing.T) {
	r := newS3Remote(t)
	const bound = time.Second
	e, f, s := newRig(t, r, "  restore_timeout: 1s\n  retry_max_interval: 200ms\n", simulate.Options{Devices: 20, Sites: 2,
		Count: 4000, Interval: 50 * time.Millisecond, Start: streamStart, Seed: 11, EndMarker: true})
	half := len(s.msgs) / 2
	e.startFed(f, s.msgs[:half])
	id := e.Trigger()
	e.waitRemote(id)
	e.MustRun()
	e.Kill()
	if err := os.RemoveAll(e.DataDir); err != nil {
		t.Fatal(err)
	}
	before, _ := e.readResults()

	r.s3.Stop()
	sock := notifytest.Listen(t)
	p := e.Start(sock.Env())
	sock.WaitFor(0, longTimeout, "EXTEND_TIMEOUT_USEC", func(m notifytest.Msg) bool { return m.Has("EXTEND_TIMEOUT_USEC") })
	sock.WaitFor(0, longTimeout, "STATUS=waiting for remote", func(m notifytest.Msg) bool {
		return strings.HasPrefix(m.Fields["STATUS"], "waiting for remote s3://")
	})
	// Still waiting, three times the bound after the first failed attempt.
	p.WaitFor("a wait of 3 × restore_timeout", longTimeout, func() bool {
		o := p.Overview()
		w := o.Recovery
		if o.Ready || o.Running || w == nil || w.Waiting == nil {
			t.Fatalf("while the remote is down: ready %v, running %v, recovery %+v, status %q", o.Ready, o.Running, w, o.Status)
		}
		return time.Since(time.UnixMilli(w.Waiting.Since)) > 3*bound && w.Waiting.Attempts >= 3
	})
	o := p.Overview()
	if !strings.HasPrefix(o.Status, "waiting for remote s3://") || o.Recovery.Waiting.LastError == "" {
		t.Fatalf("overview while waiting: status %q, recovery %+v", o.Status, o.Recovery.Waiting)
	}
	for _, m := range func() []notifytest.Msg { ms, _ := sock.Since(0); return ms }() {
		if m.Has("READY") {
			t.Fatalf("READY=1 while waiting for the remote: %q", m.Raw)
		}
	}
	if after, _ := e.readResults(); len(after) != len(before) {
		t.Fatalf("%d windows published while waiting for the remote (%d before)", len(after)-len(before), len(before))
	}

	r.s3.Restart()
	p.WaitReady()
	o = p.Overview()
	if o.Recovery == nil || o.Recovery.Source != "remote" || o.Recovery.Checkpoint < id || o.Recovery.Waiting != nil {
		t.Fatalf("recovery %+v, want from remote checkpoint ≥ %d", o.Recovery, id)
	}
	if _, ok := p.FindLog("the remote answered after a wait"); !ok {
		t.Fatal("no log line about the wait")
	}
	f.MustSend(t, s.msgs[half:])
	want := s.want()
	e.waitResults(want)
	got, problems := e.readResults()
	compare(t, got, problems, want)
	t.Logf("%d windows exact after a wait for the remote of more than %s", len(want), 3*bound)
}
