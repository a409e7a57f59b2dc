package plan

import "math"

// The arithmetic of capacity planning, shared by `eddy plan` and the
// running daemon's live headroom. Rates are readings per second, sizes
// bytes, times seconds. A figure that does not apply (a rate of zero, a
// maximum at or below the live rate) is +Inf: "never catches up", "never
// fills".

// Headroom is max ÷ live: how many times the live input the pipeline can
// take with checkpointing on. +Inf with no live input.
func Headroom(max, live float64) float64 {
	if live <= 0 {
		return math.Inf(1)
	}
	return max / live
}

// CatchUp is the time after a crash now until the job is back at the head
// of the input: the restore takes restore seconds; meanwhile, and since
// the checkpoint that is restored (checkpointAge seconds before the
// crash), input arrives at live readings/s and has to be replayed, at the
// surplus max − live. +Inf when max ≤ live: the job never catches up.
func CatchUp(restore, checkpointAge, max, live float64) float64 {
	if live <= 0 {
		return restore
	}
	if max <= live {
		return math.Inf(1)
	}
	backlog := live * (restore + checkpointAge)
	return restore + backlog/(max-live)
}

// RideOut is how long an outage of the uplink or a sink the ingest log
// can hold: the room left to its max_size at the live input in bytes/s.
func RideOut(maxSize, used int64, bytesPerSecond float64) float64 {
	if bytesPerSecond <= 0 {
		return math.Inf(1)
	}
	return math.Max(0, float64(maxSize-used)) / bytesPerSecond
}

// DiskFull is when the disk fills if nothing is removed, at bytesPerSecond.
func DiskFull(free int64, bytesPerSecond float64) float64 {
	if bytesPerSecond <= 0 {
		return math.Inf(1)
	}
	return math.Max(0, float64(free)) / bytesPerSecond
}

// Finite turns +Inf into -1 for JSON, which has no infinity: -1 reads
// "never" in the report, the API and /metrics.
func Finite(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return -1
	}
	return v
}
