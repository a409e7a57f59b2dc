package pipeline

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/storage/keygroup"
)

// collector is a node of a task's operator chain. Readings, watermarks,
// barriers and the end of input are pushed through it in order, on the
// task's goroutine.
type collector interface {
	collect(r *Reading) error
	watermark(wm int64) error
	// idle says the source feeding this chain has gone idle. wm is the
	// watermark the box's clock allows (idle_advance), minWatermark for none.
	idle(wm int64) error
	barrier(b *Barrier) error
	end() error
}

// fanout passes everything to several children. A child may change the
// reading's fields (map), so every child but the last gets a copy.
type fanout []collector

func (f fanout) collect(r *Reading) error {
	for i, c := range f {
		rr := r
		if i < len(f)-1 {
			rr = r.clone()
		}
		if err := c.collect(rr); err != nil {
			return err
		}
	}
	return nil
}

func (f fanout) watermark(wm int64) error {
	for _, c := range f {
		if err := c.watermark(wm); err != nil {
			return err
		}
	}
	return nil
}

func (f fanout) idle(wm int64) error {
	for _, c := range f {
		if err := c.idle(wm); err != nil {
			return err
		}
	}
	return nil
}

func (f fanout) barrier(b *Barrier) error {
	for _, c := range f {
		if err := c.barrier(b); err != nil {
			return err
		}
	}
	return nil
}

func (f fanout) end() error {
	for _, c := range f {
		if err := c.end(); err != nil {
			return err
		}
	}
	return nil
}

func collectorOf(cs []collector) collector {
	if len(cs) == 1 {
		return cs[0]
	}
	return fanout(cs)
}

// passthrough forwards control elements to next; embedded by stateless nodes.
type passthrough struct{ next collector }

func (p passthrough) watermark(wm int64) error { return p.next.watermark(wm) }
func (p passthrough) idle(wm int64) error      { return p.next.idle(wm) }
func (p passthrough) barrier(b *Barrier) error { return p.next.barrier(b) }
func (p passthrough) end() error               { return p.next.end() }

// filterNode keeps the readings for which its expression is true.
type filterNode struct {
	passthrough
	stage string
	prog  *vm.Program
	vm    vm.VM
	dl    *deadLetters
	sx    *slotExpr // on the slot path (slotpath.go)
}

func (n *filterNode) collect(r *Reading) error {
	if r.S != nil {
		return n.collectSlots(r)
	}
	out, err := n.vm.Run(n.prog, r.Fields)
	if err != nil {
		return n.dl.reading(r, n.stage, "filter: "+err.Error())
	}
	if ok, _ := out.(bool); ok {
		return n.next.collect(r)
	}
	return nil
}

// mapNode assigns fields from expressions, each evaluated against the input.
type mapNode struct {
	passthrough
	stage  string
	fields []string
	progs  []*vm.Program
	vals   []any
	vm     vm.VM
	dl     *deadLetters
	// On the slot path (slotpath.go): per expression, the slot of its
	// field and its result.
	sxs    []*slotExpr
	outIdx []int
	svals  []slot
}

func newMapNode(stage string, m map[string]string, dl *deadLetters, next collector) (*mapNode, error) {
	n := &mapNode{passthrough: passthrough{next}, stage: stage, dl: dl}
	for f := range m {
		n.fields = append(n.fields, f)
	}
	sort.Strings(n.fields)
	for _, f := range n.fields {
		p, err := lang.CompileMap(m[f])
		if err != nil {
			return nil, fmt.Errorf("stage %s: map %s: %w", stage, f, err)
		}
		n.progs = append(n.progs, p)
	}
	n.vals = make([]any, len(n.fields))
	return n, nil
}

func (n *mapNode) collect(r *Reading) error {
	if r.S != nil {
		return n.collectSlots(r)
	}
	for i, p := range n.progs {
		v, err := n.vm.Run(p, r.Fields)
		if err != nil {
			return n.dl.reading(r, n.stage, "map "+n.fields[i]+": "+err.Error())
		}
		n.vals[i] = v
	}
	for i, f := range n.fields {
		r.Fields[f] = n.vals[i]
	}
	return n.next.collect(r)
}

// shuffleNode routes readings to the subtasks of a keyed stage by key group,
// in batches, through bounded channels. A full channel blocks: that time is
// the task's back-pressure.
type shuffleNode struct {
	stage     string
	keyFields []string
	inputs    []string // numeric fields the stage's aggregates read
	maxP      int
	outs      []chan element
	bufs      []*batch
	batchSize int
	pool      *batchPool
	dl        *deadLetters
	m         *TaskMetrics
	abort     <-chan struct{}
	keyParts  []string
	keyBuf    []byte
	// The previous reading's key and its route: readings of one device
	// come in runs (routed: lastKey is set).
	lastKey string
	lastKG  uint16
	lastI   int
	routed  bool
	// Readings added since RecordsOut was last raised (once per batch
	// sent, not per reading).
	uncounted int64
	// On the slot path (slotpath.go): the slots of keyFields and inputs.
	keyIdx, inIdx []int
	partBuf       []byte
	announcer
}

func (n *shuffleNode) collect(r *Reading) error {
	if r.S != nil {
		return n.collectSlots(r)
	}
	n.keyParts = n.keyParts[:0]
	for _, f := range n.keyFields {
		v, ok := r.Fields[f]
		if !ok || v == nil {
			return n.dl.reading(r, n.stage, "missing key field "+f)
		}
		s, ok := keyString(v)
		if !ok {
			return n.dl.reading(r, n.stage, fmt.Sprintf("key field %s: want string or number, got %s", f, typeName(v)))
		}
		n.keyParts = append(n.keyParts, s)
	}
	n.keyBuf = encodeKey(n.keyBuf[:0], n.keyParts)
	i, kg, b := n.route()
	start := len(b.vals)
	for _, f := range n.inputs {
		v, ok := r.Fields[f]
		if !ok || v == nil {
			b.vals = b.vals[:start]
			return n.dl.reading(r, n.stage, "missing field "+f)
		}
		x, ok := v.(float64)
		if !ok {
			b.vals = b.vals[:start]
			return n.dl.reading(r, n.stage, fmt.Sprintf("field %s: want number, got %s", f, typeName(v)))
		}
		b.vals = append(b.vals, x)
	}
	return n.add(r, i, kg, b)
}

// route is the subtask, key group and open batch of the key in keyBuf,
// which becomes lastKey; the key of the previous reading is not hashed
// again.
func (n *shuffleNode) route() (int, uint16, *batch) {
	if !n.routed || n.lastKey != string(n.keyBuf) { // no allocation for the comparison
		n.lastKey = string(n.keyBuf)
		n.lastKG = keygroup.Of(n.keyBuf, n.maxP)
		n.lastI = keygroup.OperatorIndex(n.lastKG, n.maxP, len(n.outs))
		n.routed = true
	}
	i, kg := n.lastI, n.lastKG
	b := n.bufs[i]
	if b == nil {
		b = n.pool.get()
		n.bufs[i] = b
	}
	return i, kg, b
}

// add appends the event of r, whose aggregate inputs are in b.vals, to
// batch b of subtask i; its key is lastKey (route).
func (n *shuffleNode) add(r *Reading, i int, kg uint16, b *batch) error {
	var src srcPos
	if r.Msg != nil {
		src = srcPos{r.Msg.Source, r.Msg.Offset}
	}
	// Field by field into the batch: an event is too large for registers,
	// and a composite literal would be built on the stack and copied.
	k := len(b.events)
	if k == cap(b.events) {
		b.events = slices.Grow(b.events, 1)
	}
	b.events = b.events[:k+1]
	ev := &b.events[k]
	ev.kg, ev.key, ev.ts, ev.vals, ev.src = kg, n.lastKey, r.TS, nil, src
	n.uncounted++
	if len(b.events) >= n.batchSize {
		return n.flushOne(i)
	}
	return nil
}

// countOut adds the readings added since the last call to RecordsOut.
func (n *shuffleNode) countOut() {
	if n.uncounted > 0 {
		n.m.RecordsOut.Add(n.uncounted)
		n.uncounted = 0
	}
}

func (n *shuffleNode) flushOne(i int) error {
	n.countOut()
	b := n.bufs[i]
	if b == nil || len(b.events) == 0 {
		return nil
	}
	n.bufs[i] = nil
	return n.send(i, element{kind: elemData, b: b})
}

func (n *shuffleNode) send(i int, e element) error {
	select {
	case n.outs[i] <- e:
		return nil
	default:
	}
	t := time.Now()
	defer func() { n.m.BackPressuredNanos.Add(time.Since(t).Nanoseconds()) }()
	trig := n.ov.armed()
	for {
		select {
		case n.outs[i] <- e:
			return nil
		case b := <-trig:
			trig = nil
			if err := n.ov.fire(b); err != nil {
				return err
			}
		case <-n.abort:
			return errAborted
		}
	}
}

func (n *shuffleNode) broadcast(e element) error {
	n.countOut()
	for i := range n.outs {
		if err := n.flushOne(i); err != nil {
			return err
		}
	}
	for i := range n.outs {
		if err := n.send(i, e); err != nil {
			return err
		}
	}
	return nil
}

func (n *shuffleNode) watermark(wm int64) error {
	return n.broadcast(element{kind: elemWatermark, wm: wm})
}

func (n *shuffleNode) idle(wm int64) error {
	return n.broadcast(element{kind: elemWatermark, idle: true, wm: wm})
}

func (n *shuffleNode) barrier(b *Barrier) error {
	if err := n.announce(b, n.abort); err != nil {
		return err
	}
	return n.broadcast(element{kind: elemBarrier, barrier: b})
}

func (n *shuffleNode) end() error {
	return n.broadcast(element{kind: elemEnd})
}

func keyString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	}
	return "", false
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64, int, int64:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}
