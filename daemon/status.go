package daemon

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The STATUS= line (systemctl status): one short line, most important
// first. composeStatus is a pure function of a statusSnapshot; the notifier
// takes a snapshot every tick and sends the line whenever its stable part
// (statusSnapshot.stable) changes, and every statusEvery anyway so that
// ages and rates stay fresh.
//
//	STALLED for 45s with 12k messages waiting · …
//	ingest log failed: readings · MQTT disconnected · ingest log full, intake paused · uplink down ·
//	checkpoint 46 2s ago · backlog 0 · 950 rec/s · back-pressure 12% · headroom 4.2× · remote 45 lag 5s

// statusSnapshot is everything the STATUS= line says, read at one instant.
type statusSnapshot struct {
	// Phase is what the supervisor does while no job runs ("starting",
	// "recovering", "restarting in 2s after failure: …").
	Phase   string
	Running bool // a job runs
	// Stopping: a graceful stop is under way; FinalCheckpoint: with
	// checkpointing on, so a final checkpoint is being taken.
	Stopping, FinalCheckpoint bool

	// Stalled is the watchdog's view (stall.go): no progress for
	// StalledFor while Waiting messages wait.
	Stalled    bool
	StalledFor time.Duration
	Waiting    int64

	Sources []sourceStatus // in configuration order
	// IntakePaused is why intake is paused beyond a full ingest log
	// (which Sources shows per source): disk_full, ingest_log_error.
	IntakePaused []string

	Checkpointing bool // checkpointing.interval > 0
	// Checkpoint is the newest checkpoint the running job completed (0:
	// none yet), completed CheckpointAge ago.
	Checkpoint    int64
	CheckpointAge time.Duration
	// Restored is the checkpoint the running job was restored from (0:
	// none), completed RestoredAge ago.
	Restored    int64
	RestoredAge time.Duration

	// Backlog is the messages in the ingest logs the sources have not read
	// yet: per source, the log's next offset minus the job's read position.
	Backlog      int64
	Rate         float64 // records per second read by the sources (5 s average)
	BackPressure float64 // 0..1, the largest share of time a task waited on a full channel
	// Headroom is the latest plan's maximum ÷ the live input
	// (daemon/headroom.go); 0: no plan or no input.
	Headroom float64

	Uplink *uplinkStatus // nil: upload is off
}

// sourceStatus is one source's MQTT client and ingest log.
type sourceStatus struct {
	Name      string
	Connected bool   // the MQTT client is connected (false before it started)
	Full      bool   // the ingest log is full: intake paused, the broker holds messages
	Failed    string // the ingest log's fatal error, if any
}

// uplinkStatus is the uploader's link.
type uplinkStatus struct {
	Known bool // the uploader's first request has ended
	Up    bool
	// Newest is the newest checkpoint on the remote (0: none), Lag how far
	// it is behind the newest local one.
	Newest int64
	Lag    time.Duration
}

// composeStatus renders s as the STATUS= line.
func composeStatus(s statusSnapshot) string {
	if s.Stopping {
		if s.FinalCheckpoint {
			return "stopping: taking the final checkpoint"
		}
		return "stopping"
	}
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	if !s.Running {
		parts = append(parts, s.Phase)
	}
	if s.Running && s.Stalled {
		add("STALLED for %s with %s messages waiting", humanAge(s.StalledFor), humanCount(float64(s.Waiting)))
	}
	if len(s.IntakePaused) > 0 {
		add("INTAKE PAUSED (%s)", strings.Join(s.IntakePaused, ", "))
	}
	var failed, down, full []string
	for _, src := range s.Sources {
		if src.Failed != "" {
			failed = append(failed, src.Name)
		}
		if !src.Connected {
			down = append(down, src.Name)
		}
		if src.Full {
			full = append(full, src.Name)
		}
	}
	if len(failed) > 0 {
		add("ingest log failed: %s", strings.Join(failed, ", "))
	}
	// Name the sources only when some, not all, are affected.
	which := func(names []string) string {
		if len(names) == len(s.Sources) {
			return ""
		}
		return ": " + strings.Join(names, ", ")
	}
	if len(down) > 0 {
		add("MQTT disconnected%s", which(down))
	}
	if len(full) > 0 {
		add("ingest log full%s, intake paused", which(full))
	}
	if u := s.Uplink; u != nil && u.Known && !u.Up {
		add("uplink down")
	}
	if s.Running {
		switch {
		case !s.Checkpointing:
			add("checkpoints off")
		case s.Checkpoint > 0:
			add("checkpoint %d %s ago", s.Checkpoint, humanAge(s.CheckpointAge))
		case s.Restored > 0:
			add("restored checkpoint %d (%s old)", s.Restored, humanAge(s.RestoredAge))
		default:
			add("no checkpoint yet")
		}
		if !s.Stalled {
			add("backlog %s", humanCount(float64(s.Backlog)))
		}
		add("%s rec/s", humanCount(s.Rate))
		if bp := s.BackPressure * 100; bp >= 1 {
			add("back-pressure %.0f%%", bp)
		}
		if s.Headroom > 0 {
			add("headroom %.1f×", s.Headroom)
		}
	}
	if u := s.Uplink; u != nil {
		switch {
		case !u.Known:
			add("uplink not checked yet")
		case !u.Up: // said above
		case u.Newest == 0:
			add("uplink up, nothing uploaded yet")
		default:
			add("remote %d lag %s", u.Newest, humanAge(u.Lag))
		}
	}
	return strings.Join(parts, " · ")
}

// stable is s without what changes all the time (ages, rates, the size
// of a backlog): a change of s.stable() is a change that matters, sent at
// once; the rest is refreshed every statusEvery.
func (s statusSnapshot) stable() string {
	s.StalledFor, s.CheckpointAge, s.RestoredAge, s.Rate, s.BackPressure, s.Headroom = 0, 0, 0, 0, 0, 0
	s.Waiting = min(s.Waiting, 1)
	s.Backlog = min(s.Backlog, 1)
	if s.Uplink != nil {
		u := *s.Uplink
		u.Lag = 0
		s.Uplink = &u
	}
	return composeStatus(s)
}

// humanAge renders 0s, 42s, 5m3s, 2h5m, 3d4h.
func humanAge(d time.Duration) string {
	if s := max(d, 0).Round(time.Second); s < time.Hour {
		return s.String()
	}
	if m := d.Round(time.Minute); m < 24*time.Hour {
		return fmt.Sprintf("%dh%dm", int(m.Hours()), int(m.Minutes())%60)
	}
	h := int(d.Round(time.Hour).Hours())
	return fmt.Sprintf("%dd%dh", h/24, h%24)
}

// humanCount renders 950, 12.3k, 4.1M.
func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "k"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
