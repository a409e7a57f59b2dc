// Package sink holds where a job's output goes: the last room of the flow
// source → ingest → tasks → sinks.
//
// A Sink takes rendered Outputs in order and blocks rather than drop
// (back-pressure); Flush returns once what was written is durable (File:
// fsynced) or acknowledged by the broker (MQTT: PUBACK/PUBCOMP). The
// pipeline renders results and dead letters into Outputs; this package
// never sees a reading.
//
// In exactly-once mode a Stager per sink node holds the output of each
// checkpoint epoch (Epoch) until that checkpoint has completed; the staged
// epochs are part of the task state of every checkpoint, so output of a
// completed checkpoint survives a crash before it was released, and is
// released again, with the same result ids, after a restore.
package sink
