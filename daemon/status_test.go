package daemon

import (
	"testing"
	"time"
)

func TestComposeStatus(t *testing.T) {
	up := []sourceStatus{{Name: "readings", Connected: true}}
	running := func(f func(*statusSnapshot)) statusSnapshot {
		s := statusSnapshot{Running: true, Checkpointing: true, Sources: up,
			Checkpoint: 46, CheckpointAge: 2 * time.Second, Rate: 950}
		if f != nil {
			f(&s)
		}
		return s
	}
	tests := []struct {
		name string
		s    statusSnapshot
		want string
	}{
		{"starting", statusSnapshot{Phase: "starting", Sources: []sourceStatus{{Name: "readings"}}}, "starting · MQTT disconnected"},
		{"recovering, connected", statusSnapshot{Phase: "recovering", Sources: up}, "recovering"},
		{"restarting after failure", statusSnapshot{Phase: "restarting in 2s after failure: boom", Sources: up},
			"restarting in 2s after failure: boom"},
		{"waiting for the remote", statusSnapshot{Phase: "waiting for remote s3://fleet/eddy: connection refused", Sources: up},
			"waiting for remote s3://fleet/eddy: connection refused"},
		{"stopping with final checkpoint", running(func(s *statusSnapshot) { s.Stopping, s.FinalCheckpoint = true, true }),
			"stopping: taking the final checkpoint"},
		{"stopping without checkpointing", statusSnapshot{Stopping: true}, "stopping"},
		{"healthy", running(nil), "checkpoint 46 2s ago · backlog 0 · 950 rec/s"},
		{"just restored", running(func(s *statusSnapshot) {
			s.Checkpoint, s.CheckpointAge, s.Restored, s.RestoredAge, s.Rate = 0, 0, 36, 12*time.Second, 0
		}), "restored checkpoint 36 (12s old) · backlog 0 · 0 rec/s"},
		{"completed after restore", running(func(s *statusSnapshot) { s.Restored = 36 }),
			"checkpoint 46 2s ago · backlog 0 · 950 rec/s"},
		{"no checkpoint yet", running(func(s *statusSnapshot) { s.Checkpoint = 0 }),
			"no checkpoint yet · backlog 0 · 950 rec/s"},
		{"checkpoints off", running(func(s *statusSnapshot) { s.Checkpointing, s.Checkpoint = false, 0 }),
			"checkpoints off · backlog 0 · 950 rec/s"},
		{"backlog and back-pressure", running(func(s *statusSnapshot) { s.Backlog, s.Rate, s.BackPressure = 20345, 12345, 0.123 }),
			"checkpoint 46 2s ago · backlog 20k · 12k rec/s · back-pressure 12%"},
		{"back-pressure below 1% is left out", running(func(s *statusSnapshot) { s.BackPressure = 0.004 }),
			"checkpoint 46 2s ago · backlog 0 · 950 rec/s"},
		{"MQTT disconnected", running(func(s *statusSnapshot) {
			s.Sources, s.Rate = []sourceStatus{{Name: "readings"}}, 0
		}), "MQTT disconnected · checkpoint 46 2s ago · backlog 0 · 0 rec/s"},
		{"one of two sources disconnected", running(func(s *statusSnapshot) {
			s.Sources = []sourceStatus{{Name: "a", Connected: true}, {Name: "b"}}
		}), "MQTT disconnected: b · checkpoint 46 2s ago · backlog 0 · 950 rec/s"},
		{"both sources disconnected", running(func(s *statusSnapshot) {
			s.Sources = []sourceStatus{{Name: "a"}, {Name: "b"}}
		}), "MQTT disconnected · checkpoint 46 2s ago · backlog 0 · 950 rec/s"},
		{"ingest log full", running(func(s *statusSnapshot) {
			s.Sources, s.Backlog = []sourceStatus{{Name: "readings", Connected: true, Full: true}}, 1500
		}), "ingest log full, intake paused · checkpoint 46 2s ago · backlog 1.5k · 950 rec/s"},
		{"disk full", running(func(s *statusSnapshot) {
			s.IntakePaused, s.Backlog = []string{"disk_full"}, 20
		}), "INTAKE PAUSED (disk_full) · checkpoint 46 2s ago · backlog 20 · 950 rec/s"},
		{"one of two logs full", running(func(s *statusSnapshot) {
			s.Sources = []sourceStatus{{Name: "a", Connected: true, Full: true}, {Name: "b", Connected: true}}
		}), "ingest log full: a, intake paused · checkpoint 46 2s ago · backlog 0 · 950 rec/s"},
		{"ingest log failed", running(func(s *statusSnapshot) {
			s.Sources = []sourceStatus{{Name: "readings", Connected: true, Failed: "fsync: EIO"}}
		}), "ingest log failed: readings · checkpoint 46 2s ago · backlog 0 · 950 rec/s"},
		{"stalled", running(func(s *statusSnapshot) {
			s.Stalled, s.StalledFor, s.Waiting, s.Backlog, s.Rate = true, 45*time.Second, 12000, 12000, 0
		}), "STALLED for 45s with 12k messages waiting · checkpoint 46 2s ago · 0 rec/s"},
		{"uplink not checked yet", running(func(s *statusSnapshot) { s.Uplink = &uplinkStatus{} }),
			"checkpoint 46 2s ago · backlog 0 · 950 rec/s · uplink not checked yet"},
		{"uplink down", running(func(s *statusSnapshot) { s.Uplink = &uplinkStatus{Known: true, Newest: 40} }),
			"uplink down · checkpoint 46 2s ago · backlog 0 · 950 rec/s"},
		{"uplink up, nothing uploaded", running(func(s *statusSnapshot) { s.Uplink = &uplinkStatus{Known: true, Up: true} }),
			"checkpoint 46 2s ago · backlog 0 · 950 rec/s · uplink up, nothing uploaded yet"},
		{"uplink up", running(func(s *statusSnapshot) {
			s.Uplink = &uplinkStatus{Known: true, Up: true, Newest: 45, Lag: 5 * time.Second}
		}), "checkpoint 46 2s ago · backlog 0 · 950 rec/s · remote 45 lag 5s"},
		{"everything wrong at once, most important first", running(func(s *statusSnapshot) {
			s.Stalled, s.StalledFor, s.Waiting = true, time.Minute, 3
			s.Sources = []sourceStatus{{Name: "readings", Full: true, Failed: "EIO"}}
			s.Uplink = &uplinkStatus{Known: true}
			s.CheckpointAge, s.Rate = 90*time.Minute, 0
		}), "STALLED for 1m0s with 3 messages waiting · ingest log failed: readings · MQTT disconnected · " +
			"ingest log full, intake paused · uplink down · checkpoint 46 1h30m ago · 0 rec/s"},
		{"uplink down while recovering", statusSnapshot{Phase: "recovering", Sources: up, Uplink: &uplinkStatus{Known: true}},
			"recovering · uplink down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := composeStatus(tc.s); got != tc.want {
				t.Errorf("composeStatus\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// The stable part of the line changes with every state that matters and
// not with ages, rates or the size of a backlog.
func TestStatusStable(t *testing.T) {
	base := statusSnapshot{Running: true, Checkpointing: true, Sources: []sourceStatus{{Name: "readings", Connected: true}},
		Checkpoint: 46, CheckpointAge: 2 * time.Second, Backlog: 10, Rate: 950,
		Uplink: &uplinkStatus{Known: true, Up: true, Newest: 45, Lag: time.Second}}
	same := []func(*statusSnapshot){
		func(s *statusSnapshot) { s.CheckpointAge = time.Hour },
		func(s *statusSnapshot) { s.Rate, s.BackPressure = 0, 0.5 },
		func(s *statusSnapshot) { s.Backlog = 20000 },
		func(s *statusSnapshot) { s.Uplink = &uplinkStatus{Known: true, Up: true, Newest: 45, Lag: time.Minute} },
	}
	changed := []func(*statusSnapshot){
		func(s *statusSnapshot) { s.Sources = []sourceStatus{{Name: "readings"}} },
		func(s *statusSnapshot) { s.Sources = []sourceStatus{{Name: "readings", Connected: true, Full: true}} },
		func(s *statusSnapshot) { s.Uplink = &uplinkStatus{Known: true, Newest: 45} },
		func(s *statusSnapshot) { s.Uplink = &uplinkStatus{Known: true, Up: true, Newest: 46} },
		func(s *statusSnapshot) { s.Checkpoint = 47 },
		func(s *statusSnapshot) { s.Backlog = 0 },
		func(s *statusSnapshot) { s.Stalled, s.Waiting = true, 10 },
		func(s *statusSnapshot) { s.Stopping = true },
		func(s *statusSnapshot) { s.Running, s.Phase = false, "recovering" },
	}
	for i, f := range same {
		s := base
		f(&s)
		if s.stable() != base.stable() {
			t.Errorf("same #%d: stable part changed: %q → %q", i, base.stable(), s.stable())
		}
	}
	for i, f := range changed {
		s := base
		f(&s)
		if s.stable() == base.stable() {
			t.Errorf("changed #%d: stable part did not change: %q (%q)", i, s.stable(), composeStatus(s))
		}
	}
	if base.Uplink.Lag != time.Second {
		t.Error("stable modified the snapshot's uplink")
	}
}

func TestHumanAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", 1400 * time.Millisecond: "1s", 42 * time.Second: "42s",
		5*time.Minute + 3*time.Second: "5m3s", 59*time.Minute + 59*time.Second + 600*time.Millisecond: "1h0m",
		2*time.Hour + 5*time.Minute: "2h5m", 76 * time.Hour: "3d4h",
	} {
		if got := humanAge(d); got != want {
			t.Errorf("humanAge(%s) = %q, want %q", d, got, want)
		}
	}
}
