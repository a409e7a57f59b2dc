// Package daemon runs eddy as a service: it turns the configuration into a
// job, owns every long-lived component (embedded broker, MQTT ingest, ingest
// logs, sinks, the pipeline, the HTTP server) in one run group, and stops
// them in order.
//
// Lifecycle (reload.go, systemd.go): Stop (SIGTERM, SIGINT) takes a final
// checkpoint and returns; Reload (SIGHUP) applies what can change live and
// refuses the rest. Under systemd it speaks sd_notify: READY=1 after
// recovery, STATUS= lines, WATCHDOG=1 while the pipeline is not stalled,
// RELOADING=1 and STOPPING=1. The HTTP side (api.go, auth.go, metrics.go,
// web/) serves the Flink-shaped JSON API, /metrics and the web page, behind
// the bearer-token policy of auth.go.
package daemon

// Version is set at build time (-ldflags -X).
var Version = "dev"
