// Package ingest is the bridge from an MQTT subscription to a source's
// ingest log: the first room of the flow source → ingest → tasks → sinks.
//
// A Bridge appends every message it receives to the log and acknowledges it
// to the broker (PUBACK) only once the log has made it durable (group
// commit), so a message the broker considers delivered is always on disk.
// When the log is full the bridge stops acknowledging and the broker holds
// the rest. A redelivery (DUP) of a message already in the log is recognised
// by packet id and a hash of topic and payload, and not appended again.
//
// Words: a "message" is one MQTT PUBLISH; what the log stores for it is an
// ingestlog.Record (a framed log entry). The readings parsed from it later
// are the pipeline's business, not this package's.
package ingest
