// Package lang is the small language a job is written in: filter and map
// expressions, window aggregates, topic templates, and the field names every
// window result carries. It is a leaf: the configuration (daemon/config)
// validates with it and the pipeline executes with it, so what `eddy
// validate` accepts is exactly what a job runs, and checking a
// configuration does not link the engine or RocksDB.
//
//   - Expressions are expr-lang programs over a reading's fields
//     (CompileFilter, CompileMap). Both compile with the same options; an
//     unknown field is nil, not an error.
//   - An aggregate is count() or fn(field) with fn one of sum, min, max,
//     avg, first, last (ParseAggregate).
//   - A topic template is text with {field} placeholders (ParseTemplate).
//   - ResultFields are the fields of a window result besides its key fields
//     and aggregates; neither may reuse them.
package lang
