// Package pipeline is eddy's dataflow engine: it turns a JobSpec into
// running tasks, moves records between them through bounded channels, and
// keeps keyed state in RocksDB.
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
//     in-band, so a barrier separates exactly the records before it from the
//     records after it.
package pipeline
