package remote

import (
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/simulate"
)

// TestLocalRecoveryFalse: with checkpointing.local_recovery false a start
// restores the remote's newest checkpoint even though a newer local one
// exists, and the results stay exact (the replay re-publishes the same
// ids with the same contents) — unless the ingest log was truncated past
// the remote checkpoint's offsets: then eddy says so and restores the
// local one.
func TestLocalRecoveryFalse(t *testing.T) {
	for _, truncated := range []bool{false, true} {
		t.Run(map[bool]string{false: "remote", true: "truncated"}[truncated], func(t *testing.T) {
			r := newS3Remote(t)
			e, f, s := newRig(t, r, "  retry_max_interval: 200ms\n  restore_timeout: 1s\n", simulate.Options{Devices: 20, Sites: 2,
				Count: 6000, Interval: 50 * time.Millisecond, Start: streamStart, Seed: 5, EndMarker: true})
			e.Env = append(e.Env, "EDDY_CHECKPOINTING_LOCAL_RECOVERY=false")
			if truncated { // small segments, so that the log is truncated soon
				e.Env = append(e.Env, "EDDY_INGEST_LOG_SEGMENT_SIZE=64KiB")
			}
			third := len(s.msgs) / 3
			e.startFed(f, s.msgs[:third])
			id := e.Trigger()
			e.waitRemote(id)
			remoteOffset := e.Overview().Ingest[0].ReadOffset

			// The link goes down; more checkpoints complete locally only.
			r.s3.Stop()
			e.WaitFor("the link to be seen down", longTimeout, func() bool { return !e.upload().LinkUp })
			f.MustSend(t, s.msgs[third:2*third])
			if truncated {
				e.WaitFor("the ingest log to be truncated past the remote checkpoint", longTimeout, func() bool {
					return e.Overview().Ingest[0].FirstOffset > remoteOffset
				})
			}
			e.waitIngested(int64(2 * third))
			local := e.Trigger()
			e.Stop()
			r.s3.Restart()

			p := e.StartReady()
			o := p.Overview()
			if truncated {
				want := "but the log was truncated and begins at"
				found := false
				for _, l := range p.Logs() {
					if strings.Contains(l.Msg(), want) && strings.Contains(l.Msg(), "keeping local checkpoint") {
						found = true
						t.Logf("logged: %s", l.Msg())
					}
				}
				if !found || o.Recovery != nil && o.Recovery.Source == "remote" {
					t.Fatalf("after truncation: logged %v, recovery %+v; want the local checkpoint ≥ %d kept", found, o.Recovery, local)
				}
				if r := p.Checkpoints().Latest.Restored; r == nil || r.ID < local {
					t.Fatalf("restored %+v, want local checkpoint ≥ %d", r, local)
				}
			} else if o.Recovery == nil || o.Recovery.Source != "remote" || o.Recovery.Checkpoint != id {
				t.Fatalf("recovery %+v, want remote checkpoint %d (local %d exists)", o.Recovery, id, local)
			}
			f.MustSend(t, s.msgs[2*third:])
			want := s.want()
			e.waitResults(want)
			got, problems := e.readResults()
			compare(t, got, problems, want)
		})
	}
}
