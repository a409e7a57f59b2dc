package pipeline

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/pipeline/sink"
)

// sinkNode renders what reaches it and hands it to a Sink in batches, at
// watermarks, barriers and the end of input, and when its buffer fills.
type sinkNode struct {
	ctx   context.Context
	name  string
	sink  sink.Sink
	tmpl  *lang.Template
	buf   []sink.Output
	m     *TaskMetrics
	log   *slog.Logger
	job   string
	names []string // key field names of the result's stage
	plan  *aggPlan
	tbuf  []byte
	// stg is set in exactly-once mode: output is staged per checkpoint and
	// handed to the sink only once that checkpoint has completed.
	stg *sink.Stager
}

const sinkBatch = 256

func (n *sinkNode) add(o sink.Output) error {
	n.buf = append(n.buf, o)
	if n.stg == nil && len(n.buf) >= sinkBatch {
		return n.flush()
	}
	return nil
}

// flush hands the buffer to the sink (at-least-once). A failing sink is retried with
// backoff for as long as it takes: the task stalls (back-pressure), nothing
// is dropped.
func (n *sinkNode) flush() error {
	if n.stg != nil || len(n.buf) == 0 {
		return nil // exactly-once: the buffer waits for the next barrier
	}
	backoff := 100 * time.Millisecond
	for {
		err := n.sink.Write(n.ctx, n.buf)
		if err == nil {
			break
		}
		if n.ctx.Err() != nil {
			return fmt.Errorf("pipeline: sink %s: %w", n.name, err)
		}
		n.log.Warn("sink write failed, retrying", "sink", n.name, "err", err, "retry_in", backoff)
		select {
		case <-n.ctx.Done():
			return fmt.Errorf("pipeline: sink %s: %w", n.name, n.ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	clear(n.buf)
	n.buf = n.buf[:0]
	return nil
}

func (n *sinkNode) collect(r *Reading) error {
	p := appendReadingJSON(nil, r.Fields)
	var topic string
	if n.tmpl != nil {
		n.tbuf = n.tmpl.Render(n.tbuf[:0], func(f string) string {
			s, _ := keyString(r.Fields[f])
			return s
		})
		topic = string(n.tbuf)
	}
	n.m.RecordsOut.Add(1)
	return n.add(sink.Output{Topic: topic, Payload: p})
}

func (n *sinkNode) collectResult(res *Result) error {
	id := resultID(n.job, res)
	p := appendResultJSON(make([]byte, 0, 192), id, res, n.names, n.plan)
	var topic string
	if n.tmpl != nil {
		n.tbuf = n.tmpl.Render(n.tbuf[:0], func(f string) string { return resultField(res, n.names, n.plan, f) })
		topic = string(n.tbuf)
	}
	n.m.RecordsOut.Add(1)
	return n.add(sink.Output{Topic: topic, ID: id, Payload: p})
}

func (n *sinkNode) watermark(int64) error {
	if n.stg != nil {
		return nil
	}
	return n.flush()
}

func (n *sinkNode) idle(int64) error { return n.watermark(0) }

// barrier closes the epoch of checkpoint b: in exactly-once mode what the
// node rendered since the previous barrier is staged under b.ID.
func (n *sinkNode) barrier(b *Barrier) error {
	if n.stg == nil {
		return n.flush()
	}
	n.stg.Stage(b.ID, n.buf)
	n.buf = nil
	return nil
}

// end flushes in at-least-once mode. In exactly-once mode output after the
// last barrier is dropped: no checkpoint covers it, so the replay after the
// next start produces it again.
func (n *sinkNode) end() error {
	if n.stg != nil {
		n.buf = nil
		return nil
	}
	return n.flush()
}

// resultID is stable across restarts: the same window of the same key of the
// same stage always gets the same id, so a re-published result is
// recognisable.
func resultID(job string, r *Result) string {
	var b strings.Builder
	b.WriteString(job)
	b.WriteByte(':')
	b.WriteString(r.Stage)
	b.WriteByte(':')
	for i, k := range r.Key {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(k)
	}
	fmt.Fprintf(&b, ":%d-%d:%d", r.Start, r.End, r.Firing)
	return b.String()
}

func resultField(r *Result, names []string, p *aggPlan, f string) string {
	switch f {
	case lang.FieldWindowStart:
		return strconv.FormatInt(r.Start, 10)
	case lang.FieldWindowEnd:
		return strconv.FormatInt(r.End, 10)
	case lang.FieldStage:
		return r.Stage
	}
	for i, k := range names {
		if k == f {
			return r.Key[i]
		}
	}
	for i, a := range p.aggs {
		if a.name == f {
			return string(appendNumber(nil, r.Values[i]))
		}
	}
	return ""
}

// appendResultJSON renders a result as a flat JSON object: id, stage, the
// key fields, window_start and window_end (unix ms), the aggregates, firing,
// and partial when some aggregates did not see the whole window.
func appendResultJSON(dst []byte, id string, r *Result, names []string, p *aggPlan) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendQuote(dst, id)
	dst = append(dst, `,"stage":`...)
	dst = strconv.AppendQuote(dst, r.Stage)
	for i, k := range names {
		dst = append(dst, ',')
		dst = strconv.AppendQuote(dst, k)
		dst = append(dst, ':')
		dst = strconv.AppendQuote(dst, r.Key[i])
	}
	dst = append(dst, `,"window_start":`...)
	dst = strconv.AppendInt(dst, r.Start, 10)
	dst = append(dst, `,"window_end":`...)
	dst = strconv.AppendInt(dst, r.End, 10)
	for i, a := range p.aggs {
		dst = append(dst, ',')
		dst = strconv.AppendQuote(dst, a.name)
		dst = append(dst, ':')
		dst = appendNumber(dst, r.Values[i])
	}
	dst = append(dst, `,"firing":`...)
	dst = strconv.AppendUint(dst, uint64(r.Firing), 10)
	if len(r.Partial) > 0 { // aggregates added while the window was open (aggmigrate.go)
		dst = append(dst, `,"`+lang.FieldPartial+`":[`...)
		for i, n := range r.Partial {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendQuote(dst, n)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

func appendNumber(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

func appendReadingJSON(dst []byte, fields map[string]any) []byte {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendQuote(dst, k)
		dst = append(dst, ':')
		switch v := fields[k].(type) {
		case float64:
			dst = appendNumber(dst, v)
		case string:
			dst = strconv.AppendQuote(dst, v)
		default:
			j, err := json.Marshal(v)
			if err != nil {
				j = []byte("null")
			}
			dst = append(dst, j...)
		}
	}
	return append(dst, '}')
}

// deadLetters reports readings that cannot be processed. It counts them,
// hands them to the dead-letter sink (if one is configured) with the reason
// and the original payload, and logs a sample.
type deadLetters struct {
	node    *sinkNode // nil: no dead-letter sink
	m       *TaskMetrics
	log     *slog.Logger
	lastLog time.Time
}

const maxDeadPayload = 64 << 10

func (d *deadLetters) send(reason string, fill func(m map[string]any)) error {
	d.m.DeadLetters.Add(1)
	if now := time.Now(); now.Sub(d.lastLog) > 10*time.Second {
		d.lastLog = now
		d.log.Warn("dead letter", "reason", reason)
	}
	if d.node == nil {
		return nil
	}
	m := map[string]any{"reason": reason}
	fill(m)
	p, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("pipeline: render dead letter: %w", err)
	}
	return d.node.add(sink.Output{Topic: d.node.topic(m), Payload: p})
}

func (n *sinkNode) topic(m map[string]any) string {
	if n.tmpl == nil {
		return ""
	}
	return string(n.tmpl.Render(nil, func(f string) string { s, _ := keyString(m[f]); return s }))
}

func describeMsg(m map[string]any, ref *MsgRef) {
	if ref == nil {
		return
	}
	m["source"] = ref.Source
	m["offset"] = ref.Offset
	m["topic"] = ref.Topic
	m["payload_size"] = len(ref.Payload)
	p := ref.Payload
	if len(p) > maxDeadPayload {
		p = p[:maxDeadPayload]
		m["payload_truncated"] = true
	}
	if utf8.Valid(p) {
		m["payload"] = string(p)
	} else {
		m["payload"] = base64.StdEncoding.EncodeToString(p)
		m["payload_encoding"] = "base64"
	}
}

// message reports a whole message that could not be parsed.
func (d *deadLetters) message(ref *MsgRef, reason string) error {
	return d.send(reason, func(m map[string]any) { describeMsg(m, ref) })
}

// reading reports one reading that a stage rejected.
func (d *deadLetters) reading(r *Reading, stage, reason string) error {
	return d.send(reason, func(m map[string]any) {
		m["stage"] = stage
		describeMsg(m, r.Msg)
		if r.Msg != nil && r.Msg.Index >= 0 {
			m["index"] = r.Msg.Index
		}
	})
}

// lateEvent reports an event dropped by a window stage for lateness.
func (d *deadLetters) lateEvent(stage string, e *event, reason string) error {
	return d.send(reason, func(m map[string]any) {
		m["stage"] = stage
		m["event_time"] = e.ts
		if e.src.source != "" {
			m["source"] = e.src.source
			m["offset"] = e.src.offset
		}
	})
}
