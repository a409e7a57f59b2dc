package pipeline

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// reasonFuture is the dead-letter reason for an event time beyond max_future.
const reasonFuture = "event time in the future"

// parser turns one ingest-log message into readings. It is owned by one
// source task and reuses its buffers.
type parser struct {
	spec      *SourceSpec
	maxSize   int
	p         fastjson.Parser
	fields    map[string]any
	rec       Reading
	ref       MsgRef
	topicBuf  []string
	tsField   string
	tsFormat  string
	ingestion bool
	maxFuture int64 // ms; 0: no limit
	// intern holds field names and short string values seen before, so a
	// reading does not allocate them again (device and site names repeat).
	intern map[string]string
	// boxed holds short string values already boxed as any: storing a
	// string in Fields would allocate its interface value for every
	// reading.
	boxed map[string]any
	// The slot path (slotpath.go), if sl is set: the slots of a reading,
	// of the topic fields (-1: unused) and of the event time, and the
	// slots of the object keys seen last at each position.
	sl        *slotLayout
	vals      []slot
	topicIdx  []int
	tsIdx     int
	keys      []keyCache
	topicOf   *ingestlog.Record // topicBuf holds the levels of its topic, topicVals its slots
	topicVals []slot
	// scanSlots (slotscan.go): the slots of the message's scanN readings.
	scanVals []slot
	scanN    int
}

const maxInterned = 1 << 16

func (ps *parser) str(b []byte) string {
	if s, ok := ps.intern[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	if len(b) <= 64 && len(ps.intern) < maxInterned {
		ps.intern[s] = s
	}
	return s
}

// strAny is str boxed as any, without an allocation for a value seen before.
func (ps *parser) strAny(b []byte) any {
	if v, ok := ps.boxed[string(b)]; ok {
		return v
	}
	var v any = ps.str(b)
	if len(b) <= 64 && len(ps.boxed) < maxInterned {
		ps.boxed[v.(string)] = v
	}
	return v
}

func newParser(spec *SourceSpec, maxSize int) *parser {
	return &parser{
		spec: spec, maxSize: maxSize, fields: make(map[string]any, 16),
		tsField: spec.EventTime.Field, tsFormat: spec.EventTime.Format,
		ingestion: spec.EventTime.Field == "", intern: map[string]string{}, boxed: map[string]any{},
		maxFuture: spec.EventTime.MaxFuture.Milliseconds(),
	}
}

// parse calls emit for every good reading of r, and dl for bad input. The
// Reading passed to emit is reused for the next one.
func (ps *parser) parse(r *ingestlog.Record, emit func(*Reading) error, dl *deadLetters) error {
	ps.ref = MsgRef{Source: ps.spec.Name, Offset: r.Offset, Topic: r.Topic, Payload: r.Payload, Index: -1}
	ps.topicOf = nil
	if len(r.Payload) > ps.maxSize {
		return dl.message(&ps.ref, fmt.Sprintf("payload too large: %d bytes, limit %d", len(r.Payload), ps.maxSize))
	}
	if ps.sl != nil {
		if ok, err := ps.scanSlots(r, emit, dl); ok {
			return err
		}
	}
	v, err := ps.p.ParseBytes(r.Payload)
	if err != nil {
		return dl.message(&ps.ref, "invalid JSON: "+err.Error())
	}
	switch v.Type() {
	case fastjson.TypeObject:
		return ps.reading(v, r, emit, dl)
	case fastjson.TypeArray:
		arr, _ := v.Array()
		if len(arr) == 0 {
			return dl.message(&ps.ref, "empty array: no readings in message")
		}
		for i, e := range arr {
			ps.ref.Index = i
			if e.Type() != fastjson.TypeObject {
				ps.rec = Reading{Msg: &ps.ref}
				if err := dl.reading(&ps.rec, ps.spec.Name, fmt.Sprintf("array element %d is a %s, want an object", i, e.Type())); err != nil {
					return err
				}
				continue
			}
			if err := ps.reading(e, r, emit, dl); err != nil {
				return err
			}
		}
		return nil
	}
	return dl.message(&ps.ref, fmt.Sprintf("message is a JSON %s, want an object or an array of objects", v.Type()))
}

func (ps *parser) reading(v *fastjson.Value, r *ingestlog.Record, emit func(*Reading) error, dl *deadLetters) error {
	if ps.sl != nil {
		return ps.readingSlots(v, r, emit, dl)
	}
	clear(ps.fields)
	if tf := ps.spec.TopicFields; len(tf) > 0 {
		ps.topicBuf = splitTopic(ps.topicBuf[:0], r.Topic)
		for i, name := range tf {
			// An empty level (sensors/site-1//telemetry) is a missing
			// field, not the value "".
			if name != "" && i < len(ps.topicBuf) && ps.topicBuf[i] != "" {
				ps.fields[name] = ps.strAny([]byte(ps.topicBuf[i]))
			}
		}
	}
	o, _ := v.Object()
	o.Visit(func(k []byte, fv *fastjson.Value) {
		if fv.Type() == fastjson.TypeString {
			ps.fields[ps.str(k)] = ps.strAny(fv.GetStringBytes())
			return
		}
		ps.fields[ps.str(k)] = jsonValue(fv)
	})
	ps.rec = Reading{Fields: ps.fields, Msg: &ps.ref}
	return ps.stampAndEmit(r, ps.eventTime, emit, dl)
}

// stampAndEmit gives ps.rec its time — the receive time, or its event time
// unless that is too far in the future — and emits it; a bad event time
// makes it a dead letter.
func (ps *parser) stampAndEmit(r *ingestlog.Record, eventTime func() (int64, error), emit func(*Reading) error, dl *deadLetters) error {
	if ps.ingestion {
		ps.rec.TS = r.Timestamp
		return emit(&ps.rec)
	}
	ts, err := eventTime()
	return ps.emitAt(r, ts, err, emit, dl)
}

// emitAt emits ps.rec with event time ts, or makes it a dead letter: err,
// its event time's error, is not nil, or ts is too far in the future.
func (ps *parser) emitAt(r *ingestlog.Record, ts int64, err error, emit func(*Reading) error, dl *deadLetters) error {
	if err != nil {
		return dl.reading(&ps.rec, ps.spec.Name, err.Error())
	}
	// Against the time eddy received the message, not the clock now:
	// a replay after a crash decides the same.
	if ps.maxFuture > 0 && ts > r.Timestamp+ps.maxFuture {
		return dl.reading(&ps.rec, ps.spec.Name, reasonFuture)
	}
	ps.rec.TS = ts
	return emit(&ps.rec)
}

func (ps *parser) eventTime() (int64, error) {
	v, ok := ps.fields[ps.tsField]
	if !ok || v == nil {
		return 0, fmt.Errorf("missing event time field %s", ps.tsField)
	}
	switch x := v.(type) {
	case float64:
		return ps.eventTimeFloat(x)
	case string:
		return ps.eventTimeString(x)
	}
	return 0, fmt.Errorf("event time field %s: want a number or an RFC 3339 string, got %s", ps.tsField, typeName(v))
}

func (ps *parser) eventTimeFloat(x float64) (int64, error) {
	switch ps.tsFormat {
	case "epoch_s":
		return int64(math.Round(x * 1000)), nil
	case "rfc3339":
		return 0, fmt.Errorf("event time field %s: want an RFC 3339 string, got a number", ps.tsField)
	case "epoch_ms":
		return int64(x), nil
	}
	if x < 1e11 { // auto: seconds until year 5138, milliseconds after
		return int64(math.Round(x * 1000)), nil
	}
	return int64(x), nil
}

func (ps *parser) eventTimeString(x string) (int64, error) {
	if ps.tsFormat == "epoch_ms" || ps.tsFormat == "epoch_s" {
		return 0, fmt.Errorf("event time field %s: want a number (%s), got a string", ps.tsField, ps.tsFormat)
	}
	t, err := time.Parse(time.RFC3339Nano, x)
	if err != nil {
		return 0, fmt.Errorf("event time field %s: %q is not RFC 3339", ps.tsField, x)
	}
	return t.UnixMilli(), nil
}

func splitTopic(dst []string, topic string) []string {
	for {
		i := strings.IndexByte(topic, '/')
		if i < 0 {
			return append(dst, topic)
		}
		dst = append(dst, topic[:i])
		topic = topic[i+1:]
	}
}

func jsonValue(v *fastjson.Value) any {
	switch v.Type() {
	case fastjson.TypeNumber:
		return v.GetFloat64()
	case fastjson.TypeString:
		return string(v.GetStringBytes())
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	case fastjson.TypeObject:
		m := map[string]any{}
		o, _ := v.Object()
		o.Visit(func(k []byte, fv *fastjson.Value) { m[string(k)] = jsonValue(fv) })
		return m
	case fastjson.TypeArray:
		a, _ := v.Array()
		out := make([]any, len(a))
		for i, e := range a {
			out[i] = jsonValue(e)
		}
		return out
	}
	return nil
}
