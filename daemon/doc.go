// Package daemon runs eddy as a service: it turns the configuration into a
// job and owns every long-lived goroutine.
//
// New locks data_dir (data_dir/LOCK, held until Close; a second eddy gets a
// *fileutil.LockedError naming the holder's PID) and opens what lives on
// disk or on a port: the ingest logs, the file sinks, the checkpoint store,
// the state memory, the uploader and the HTTP listener. It starts no
// broker, client, server or loop (the ingest logs' background goroutine —
// group commit, recovery retries — is the logs' own, from Open to Close).
// Every store it opens writes through one fileutil.OSFS, which logs slow
// fsyncs and feeds the eddy_fsync_duration_seconds histogram.
//
// Run (run.go) starts everything in one run group (github.com/oklog/run):
// signals, HTTP, the job supervisor, one ingest per source, verification of
// restored checkpoints, the uploader, ingest-log retention, the disk
// watcher, reload, the systemd notifier, the MQTT publisher, the broker
// watch (broker.go: the broker's own count of dropped messages, from
// mosquitto's $SYS tree or the embedded broker) and the embedded broker.
// The first
// actor to return ends the group and its error is Run's; every other actor
// is then interrupted, in that order. The supervisor stops gracefully on
// Stop (SIGTERM, SIGINT) or any interrupt: final checkpoint, output
// published. The notifier, the publisher and the broker outlive it, so the
// watchdog is fed and output can be published until the job is done. A
// cancelled context, a second stop signal or Close stop at once, without a
// final checkpoint. Close waits for Run to return, then closes what New
// opened; it is idempotent.
//
// Reload (SIGHUP, reload.go) applies what can change live and refuses the
// rest. Under systemd it speaks sd_notify (notify.go): READY=1 after
// recovery, STATUS= lines (status.go), WATCHDOG=1 while the pipeline is not stalled
// (stall.go), RELOADING=1 and STOPPING=1; rates.go turns task counters
// into the rates STATUS= and the overview show, and history.go keeps the
// last hour of them for the page's charts. The HTTP side (api.go,
// auth.go, metrics.go, web/) serves the Flink-shaped JSON API, /metrics
// and the web page, behind the bearer-token policy of auth.go.
//
// The disk budget (disk.go): the disk watcher pauses every ingest log
// while data_dir's or a file sink's file system is below disk.min_free;
// /healthz is then 503 "degraded" with the reason, as it is while an
// ingest log is full or recovers from a failed write or fsync.
package daemon

// Version is set at build time (-ldflags -X).
var Version = "dev"
