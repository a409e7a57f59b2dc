// Package daemon runs eddy as a service: it turns the configuration into a
// job, owns every long-lived component (embedded broker, MQTT ingest, ingest
// logs, sinks, the pipeline, the HTTP server) in one run group, and stops
// them in order on SIGINT or SIGTERM.
package daemon

// Version is set at build time (-ldflags -X).
var Version = "dev"
