package pipeline

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Sink receives rendered output. Implementations are shared by every task
// of a job and must be safe for concurrent use.
type Sink interface {
	// Write hands over outputs in order. It may buffer; it blocks when the
	// sink cannot keep up (back-pressure), and never drops.
	Write(ctx context.Context, outs []Output) error
	// Flush returns once everything written so far is durable or
	// acknowledged by the broker.
	Flush(ctx context.Context) error
	Close() error
}

// Output is one rendered message: a result, a record or a dead letter.
type Output struct {
	Topic   string `json:"topic,omitempty"` // rendered topic template; "" for sinks without topics
	ID      string `json:"id,omitempty"`    // stable result id; "" for records and dead letters
	Payload []byte `json:"payload"`
}

// template is a parsed topic template such as "results/{site}/{device}".
type template struct {
	lits   []string // len(lits) == len(fields)+1
	fields []string
}

// ParseTemplate parses a topic template; placeholders are {field}.
func ParseTemplate(s string) (template, error) {
	var t template
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			if strings.IndexByte(s, '}') >= 0 {
				return t, fmt.Errorf("unbalanced } in template")
			}
			t.lits = append(t.lits, s)
			return t, nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return t, fmt.Errorf("unclosed { in template")
		}
		t.lits = append(t.lits, s[:i])
		t.fields = append(t.fields, s[i+1:i+j])
		s = s[i+j+1:]
	}
}

// Fields lists the placeholders of the template.
func (t template) Fields() []string { return t.fields }

func (t template) render(dst []byte, lookup func(string) string) []byte {
	for i, f := range t.fields {
		dst = append(dst, t.lits[i]...)
		dst = append(dst, lookup(f)...)
	}
	return append(dst, t.lits[len(t.lits)-1]...)
}

// sinkNode renders what reaches it and hands it to a Sink in batches, at
// watermarks, barriers and the end of input, and when its buffer fills.
type sinkNode struct {
	ctx   context.Context
	name  string
	sink  Sink
	tmpl  *template
	buf   []Output
	m     *TaskMetrics
	log   *slog.Logger
	job   string
	names []string // key field names of the result's stage
	plan  *aggPlan
	tbuf  []byte
	// stg is set in exactly-once mode: output is staged per checkpoint and
	// handed to the sink only once that checkpoint has completed.
	stg *stager
}

const sinkBatch = 256

func (n *sinkNode) add(o Output) error {
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

func (n *sinkNode) collect(r *Record) error {
	p := appendRecordJSON(nil, r.Fields)
	var topic string
	if n.tmpl != nil {
		n.tbuf = n.tmpl.render(n.tbuf[:0], func(f string) string {
			s, _ := keyString(r.Fields[f])
			return s
		})
		topic = string(n.tbuf)
	}
	n.m.RecordsOut.Add(1)
	return n.add(Output{Topic: topic, Payload: p})
}

func (n *sinkNode) collectResult(res *Result) error {
	id := resultID(n.job, res)
	p := appendResultJSON(make([]byte, 0, 192), id, res, n.names, n.plan)
	var topic string
	if n.tmpl != nil {
		n.tbuf = n.tmpl.render(n.tbuf[:0], func(f string) string { return resultField(res, n.names, n.plan, f) })
		topic = string(n.tbuf)
	}
	n.m.RecordsOut.Add(1)
	return n.add(Output{Topic: topic, ID: id, Payload: p})
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
	n.stg.stage(b.ID, n.buf)
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

// stager holds one sink node's output per checkpoint until the checkpoint
// completes. Its content is part of every snapshot, so output of a
// completed checkpoint survives a crash before it was published.
type stager struct {
	name   string
	sink   Sink
	mu     sync.Mutex
	epochs []StagedEpoch // ascending ids
}

// StagedEpoch is the output a sink node produced before barrier ID.
type StagedEpoch struct {
	ID      int64    `json:"id"`
	Outputs []Output `json:"outputs"`
}

func (s *stager) stage(id int64, outs []Output) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(outs) == 0 {
		return
	}
	s.epochs = append(s.epochs, StagedEpoch{ID: id, Outputs: outs})
}

// pending returns what is staged and not yet taken; the outputs are
// immutable once staged.
func (s *stager) pending() []StagedEpoch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.epochs)
}

// peek returns, in order, the output of every epoch <= upTo. The epochs
// stay staged, and so in every snapshot, until drop: output handed to a sink
// that has not confirmed it yet must survive a crash.
func (s *stager) peek(upTo int64) []Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Output
	for i := 0; i < len(s.epochs) && s.epochs[i].ID <= upTo; i++ {
		out = append(out, s.epochs[i].Outputs...)
	}
	return out
}

// drop forgets every epoch <= upTo, once its output is confirmed.
func (s *stager) drop(upTo int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.epochs) && s.epochs[i].ID <= upTo {
		i++
	}
	s.epochs = slices.Delete(s.epochs, 0, i)
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
	case "window_start":
		return strconv.FormatInt(r.Start, 10)
	case "window_end":
		return strconv.FormatInt(r.End, 10)
	case "stage":
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
// key fields, window_start and window_end (unix ms), the aggregates, firing.
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
	return append(dst, '}')
}

func appendNumber(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

func appendRecordJSON(dst []byte, fields map[string]any) []byte {
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
	return d.node.add(Output{Topic: d.node.topic(m), Payload: p})
}

func (n *sinkNode) topic(m map[string]any) string {
	if n.tmpl == nil {
		return ""
	}
	return string(n.tmpl.render(nil, func(f string) string { s, _ := keyString(m[f]); return s }))
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
func (d *deadLetters) reading(r *Record, stage, reason string) error {
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
