package pipeline

import (
	"maps"
	"math"
)

// Reading is one reading (the fields of one measurement, parsed from an
// ingest-log message) flowing through the stateless stages of a task. A
// window result that flows on into further stages travels as a Reading too,
// its fields those of the result. (An ingestlog.Record is the framed log
// entry a message is stored as; it is not a Reading.) Fields is reused by
// the source task for the next reading: a node that keeps a reading past
// collect must copy what it needs.
type Reading struct {
	Fields map[string]any
	TS     int64   // event time, unix ms
	Msg    *MsgRef // the message it came from; nil for results
	// S, if not nil, holds the fields instead of Fields: the slot path
	// (slotpath.go), whose layout the job fixed when it was built.
	S []slot
}

// MsgRef locates the ingest-log message a reading came from, for dead letters.
type MsgRef struct {
	Source  string
	Offset  uint64
	Topic   string
	Payload []byte
	Index   int // position of the reading in an array message; -1 for a single object
}

func (r *Reading) clone() *Reading {
	c := *r
	c.Fields = maps.Clone(r.Fields)
	return &c
}

// event is a reading on its way to a keyed window stage: the key, its key
// group, its event time and the numeric inputs of the stage's aggregates.
type event struct {
	kg   uint16
	key  string // encoded composite key (see encodeKey)
	ts   int64
	vals []float64 // points into batch.vals
	src  srcPos
}

// srcPos names the message of a reading for late-event dead letters.
type srcPos struct {
	source string
	offset uint64
}

// batch is the unit sent through a channel: events for one subtask.
type batch struct {
	events []event
	vals   []float64
}

func (b *batch) reset() {
	b.events = b.events[:0]
	b.vals = b.vals[:0]
}

type elemKind uint8

const (
	elemData elemKind = iota
	elemWatermark
	elemBarrier
	elemEnd
)

// element is what travels through a channel, in order: batches, watermarks,
// checkpoint barriers and the end of the stream.
type element struct {
	kind    elemKind
	b       *batch
	wm      int64
	idle    bool // with elemWatermark: the input is idle and must not hold back the watermark; wm is then what the box's clock allows
	barrier *Barrier
}

// Barrier is checkpoint barrier N, injected by the sources.
type Barrier struct {
	ID        int64
	Timestamp int64 // trigger time, unix ms
	Savepoint bool  // of kind savepoint: keyed tasks write full snapshots
}

const minWatermark = math.MinInt64
