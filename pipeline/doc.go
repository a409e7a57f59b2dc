// Package pipeline is eddy's dataflow engine: it turns a JobSpec into
// running tasks, moves readings between them through bounded channels,
// keeps keyed state in RocksDB, and takes consistent checkpoints.
//
// # Rooms
//
// The flow of one reading is source → ingest → tasks → sinks, and the
// packages follow it:
//
//   - pipeline/mqttio: the MQTT client (paho): subscriptions (Source) and
//     the publisher sinks write through (Publisher), and the embedded broker.
//   - pipeline/ingest: the bridge from an MQTT subscription to a source's
//     ingest log (storage/ingestlog), acknowledging only what is durable.
//   - pipeline (this package): the engine. It reads the ingest logs by
//     offset and runs the tasks, barriers, windows and the checkpoint
//     coordinator.
//   - pipeline/sink: where output goes (MQTT, JSON-lines file) and the
//     Stager that holds exactly-once output until its checkpoint completes.
//   - pipeline/lang: the language a job is written in (expressions,
//     aggregates, topic templates, result field names). It is a leaf, shared
//     with daemon/config, so validating a configuration links neither the
//     engine nor RocksDB.
//
// Files of this package, by what they hold:
//
//	spec.go          JobSpec, what the daemon builds from the configuration
//	job.go           Job: NewJob, Run, Close, the figures
//	build.go         building the task graph: subtasks, chains, shuffles, sink nodes
//	restore.go       starting from a checkpoint: task state, sources, RocksDB
//	rescale.go       restoring onto another parallelism by key-group ranges
//	lostlog.go       restoring a source whose ingest log was lost
//	record.go        what flows through a task and its channels: readings, batches, barriers
//	key.go           composite key encoding
//	task.go          source and keyed tasks, barrier alignment
//	chain.go         stateless chain nodes (filter, map) and the shuffle
//	parse.go         ingest-log message → readings
//	window.go        window assigners and the window operator
//	aggregate.go     accumulators and their state encoding
//	sinknode.go      rendering results and dead letters for a sink
//	taskstate.go     the non-keyed task state stored in every checkpoint
//	async.go         a task's asynchronous checkpoint phase and its ack
//	coordinator.go   triggering, collecting acks, committing _metadata, pruning
//	release.go       the release loops, one per sink: staged output out once its checkpoint completed
//	spool.go         with a sink spool: spool loop (staged → disk) and publish loop (disk → sink) per sink
//	checkpointing.go the Job's checkpoint API (trigger, timing, stop with checkpoint)
//	cpstats.go       Flink-shaped checkpoint statistics
//	metrics.go       per-task counters; figures.go: RocksDB figures
//
// # Words
//
// A message is one MQTT PUBLISH; the ingest log stores it as an
// ingestlog.Record (a framed log entry with its offset). A Reading is one
// measurement parsed from a message, with its fields; a Result is what a
// window stage emits for one key and window; an Output (pipeline/sink) is a
// rendered result, reading or dead letter on its way to a sink. "Publish"
// means handing output to a sink and having it confirmed; a sink's release loop
// does that for exactly-once output, and mqttio.Publisher is the MQTT
// client it may go through. (The uploader's record of what the remote
// store holds is the upload package's business.)
//
// # Shape of a job
//
// Every source has one source task. It reads the source's ingest log by
// offset, parses each message into readings, runs the chain of stateless
// stages (filter, map) on the task's own goroutine, and routes each reading
// of a keyed stage to subtask keygroup.OperatorIndex(kg) through a bounded
// channel of batches. Each keyed stage runs Parallelism subtasks; a subtask
// owns one RocksDB instance and the key groups of keygroup.RangeFor(i).
// Results of a keyed stage flow on, chained, into sinks, further stateless
// stages, or the next keyed stage.
//
// # Invariants
//
//   - Nothing is dropped: a full channel blocks the sender (back-pressure),
//     and the time blocked is counted per task.
//   - Bad input never stops a task: a reading that cannot be parsed, lacks
//     its key, has a wrong type or arrives too late is counted and handed to
//     the dead-letter sink with its reason and the original payload.
//   - Channel elements are ordered: data, watermarks and barriers travel
//     in-band, so a barrier separates exactly the readings before it from
//     the readings after it.
//   - Exactly-once output: a sink node stages what it renders per
//     checkpoint epoch; the sink's own release loop (one per sink,
//     release.go) hands it to the sink only after that checkpoint's
//     _metadata is committed, and adds the sink to chk-N/_published only
//     after the sink has confirmed it; one sink down holds no other. With
//     a spool (SinkSpec.Spool) the staged epochs <= N move into the sink's
//     on-disk spool when N completes (fsynced before they leave memory) and
//     are published from there; a full spool holds every source (and so
//     every sink) until it drains.
package pipeline
