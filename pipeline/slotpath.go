package pipeline

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// The slot path: when the chain of a source task is a line of filter and
// map stages ending in the shuffle into a keyed stage (the common job, and
// the demo's), a reading travels as typed slots (Reading.S) instead of a
// map[string]any. Which fields the chain reads or writes is known when the
// job is built: each gets a slot index. The parser fills only those slots,
// unboxed, straight from fastjson's values; filters and maps run as Go
// closures over the slots (slotexpr.go) where the expression is plain
// arithmetic, comparison and logic, and on expr-lang's VM with an
// environment built from the slots otherwise; the shuffle reads key and
// aggregate inputs from their slots. Every result and every dead letter is
// the one the map path gives (TestSlotPathMatchesMapPath).
//
// Chains with a sink or several stages fed by the source, and the chains
// of keyed tasks (window results), keep the map path.

// slotExpr is what a filter or map expression needs on the slot path.
type slotExpr struct {
	fn  slotFn // nil: always the VM
	l   *slotLayout
	env map[string]any
}

func (x *slotExpr) envOf(vals []slot) map[string]any { return x.l.env(x.env, vals) }

// keyCache remembers the slot of the object key at one position: the
// readings of one source mostly list their fields in one order.
type keyCache struct {
	name string
	idx  int // -1: not a field of the chain
	// `"name":` as compact JSON writes it, as one or two words to compare
	// (slotscan.go): its first (head) and last (tail) eight bytes, n of
	// them (0: longer than 16 bytes, not compared by words).
	head, tail, mask uint64
	n                int
}

func newKeyCache(name string, idx int) keyCache {
	kc := keyCache{name: name, idx: idx}
	pat := `"` + name + `":`
	switch n := len(pat); {
	case n <= 8:
		var b [8]byte
		copy(b[:], pat)
		kc.head, kc.mask, kc.n = binary.LittleEndian.Uint64(b[:]), ^uint64(0)>>(64-8*n), n
	case n <= 16:
		kc.head = binary.LittleEndian.Uint64([]byte(pat[:8]))
		kc.tail = binary.LittleEndian.Uint64([]byte(pat[n-8:]))
		kc.mask, kc.n = ^uint64(0), n
	}
	return kc
}

// at reports whether p[i:] starts with `"name":`, compared by words; false
// also when it cannot tell (near the end of p, a long key).
func (kc *keyCache) at(p []byte, i int) bool {
	switch {
	case kc.n == 0 || i+8 > len(p):
		return false
	case kc.n <= 8:
		return binary.LittleEndian.Uint64(p[i:])&kc.mask == kc.head
	}
	return i+kc.n <= len(p) && binary.LittleEndian.Uint64(p[i:]) == kc.head &&
		binary.LittleEndian.Uint64(p[i+kc.n-8:]) == kc.tail
}

// enableSlots puts the source chain out on the slot path if it qualifies,
// resolving every field name to a slot. It reports whether it did.
func enableSlots(ps *parser, out collector) bool {
	l := newSlotLayout()
	for _, f := range ps.spec.TopicFields {
		if f != "" {
			l.add(f)
		}
	}
	if !ps.ingestion {
		l.add(ps.tsField)
	}
	var (
		filters []*filterNode
		maps    []*mapNode
		sh      *shuffleNode
	)
	for c := out; sh == nil; {
		switch n := c.(type) {
		case *filterNode:
			names, ok := exprFields(n.prog)
			if !ok {
				return false
			}
			for _, f := range names {
				l.add(f)
			}
			filters = append(filters, n)
			c = n.next
		case *mapNode:
			for _, p := range n.progs {
				names, ok := exprFields(p)
				if !ok {
					return false
				}
				for _, f := range names {
					l.add(f)
				}
			}
			for _, f := range n.fields {
				l.add(f)
			}
			maps = append(maps, n)
			c = n.next
		case *shuffleNode:
			sh = n
		default:
			return false
		}
	}
	for _, f := range sh.keyFields {
		l.add(f)
	}
	for _, f := range sh.inputs {
		l.add(f)
	}
	for _, n := range filters {
		n.sx = &slotExpr{fn: compileSlotExpr(n.prog, l), l: l, env: map[string]any{}}
	}
	for _, n := range maps {
		n.sxs = make([]*slotExpr, len(n.progs))
		env := map[string]any{} // shared by the node's expressions: filled once per reading
		for i, p := range n.progs {
			n.sxs[i] = &slotExpr{fn: compileSlotExpr(p, l), l: l, env: env}
		}
		n.outIdx = make([]int, len(n.fields))
		for i, f := range n.fields {
			n.outIdx[i] = l.index[f]
		}
		n.svals = make([]slot, len(n.fields))
	}
	sh.keyIdx = make([]int, len(sh.keyFields))
	for i, f := range sh.keyFields {
		sh.keyIdx[i] = l.index[f]
	}
	sh.inIdx = make([]int, len(sh.inputs))
	for i, f := range sh.inputs {
		sh.inIdx[i] = l.index[f]
	}
	ps.sl = l
	ps.vals = make([]slot, len(l.names))
	ps.topicVals = make([]slot, len(l.names))
	ps.topicIdx = make([]int, len(ps.spec.TopicFields))
	for i, f := range ps.spec.TopicFields {
		ps.topicIdx[i] = -1
		if f != "" {
			ps.topicIdx[i] = l.index[f]
		}
	}
	if !ps.ingestion {
		ps.tsIdx = l.index[ps.tsField]
	}
	return true
}

// readingSlots is reading on the slot path, for a message scanSlots did
// not take.
func (ps *parser) readingSlots(v *fastjson.Value, r *ingestlog.Record, emit func(*Reading) error, dl *deadLetters) error {
	vals := ps.vals
	ps.topicSlots(r, vals)
	o, _ := v.Object()
	pos := 0
	o.Visit(func(k []byte, fv *fastjson.Value) {
		idx := ps.slotIndex(pos, k)
		pos++
		if idx >= 0 {
			vals[idx] = jsonSlot(fv)
		}
	})
	return ps.finishSlots(vals, r, emit, dl)
}

// topicSlots sets the slots of a new reading of r: the topic fields, and
// nil in every other slot. A reading's JSON fields, set after them,
// override them.
func (ps *parser) topicSlots(r *ingestlog.Record, vals []slot) {
	if len(ps.topicIdx) == 0 {
		clear(vals)
		return
	}
	if ps.topicOf != r { // once per message
		ps.topicBuf = splitTopic(ps.topicBuf[:0], r.Topic)
		ps.topicOf = r
		tv := ps.topicVals
		clear(tv)
		for i, idx := range ps.topicIdx {
			if idx >= 0 && i < len(ps.topicBuf) && ps.topicBuf[i] != "" {
				tv[idx] = stringSlot(ps.topicBuf[i])
			}
		}
	}
	copy(vals, ps.topicVals)
}

// finishSlots takes the event time of a reading whose slots are filled
// and emits it.
func (ps *parser) finishSlots(vals []slot, r *ingestlog.Record, emit func(*Reading) error, dl *deadLetters) error {
	ps.rec = Reading{S: vals, Msg: &ps.ref}
	if ps.ingestion {
		ps.rec.TS = r.Timestamp
		return emit(&ps.rec)
	}
	ts, err := ps.eventTimeSlot(vals[ps.tsIdx])
	return ps.emitAt(r, ts, err, emit, dl) // stampAndEmit, without its closure
}

// slotIndex is the slot of object key k at position pos, -1 if the chain
// does not use it.
func (ps *parser) slotIndex(pos int, k []byte) int {
	if pos < len(ps.keys) && ps.keys[pos].name == string(k) {
		return ps.keys[pos].idx
	}
	idx, ok := ps.sl.index[string(k)]
	if !ok {
		idx = -1
	}
	if pos < 64 {
		for len(ps.keys) <= pos {
			ps.keys = append(ps.keys, keyCache{idx: -1})
		}
		ps.keys[pos] = newKeyCache(ps.str(k), idx)
	}
	return idx
}

// jsonSlot is jsonValue as a slot. A string points into the parser's
// buffer, valid until the next message is parsed: a reading's slots live
// only while the reading passes the chain (the shuffle copies its key).
func jsonSlot(v *fastjson.Value) slot {
	switch v.Type() {
	case fastjson.TypeNumber:
		return floatSlot(v.GetFloat64())
	case fastjson.TypeString:
		b := v.GetStringBytes()
		return stringSlot(unsafe.String(unsafe.SliceData(b), len(b)))
	case fastjson.TypeTrue:
		return boolSlot(true)
	case fastjson.TypeFalse:
		return boolSlot(false)
	case fastjson.TypeNull:
		return slot{}
	}
	return anySlot(jsonValue(v))
}

func (ps *parser) eventTimeSlot(v slot) (int64, error) {
	switch v.kind {
	case slotNil:
		return 0, fmt.Errorf("missing event time field %s", ps.tsField)
	case slotFloat:
		return ps.eventTimeFloat(v.float())
	case slotString:
		return ps.eventTimeString(v.str())
	}
	return 0, fmt.Errorf("event time field %s: want a number or an RFC 3339 string, got %s", ps.tsField, v.typeName())
}

func (n *filterNode) collectSlots(r *Reading) error {
	if n.sx.fn != nil {
		if v, ok := n.sx.fn(r.S); ok && v.kind == slotBool {
			if v.bool() {
				return n.next.collect(r)
			}
			return nil
		}
	}
	out, err := n.vm.Run(n.prog, n.sx.envOf(r.S))
	if err != nil {
		return n.dl.reading(r, n.stage, "filter: "+err.Error())
	}
	if ok, _ := out.(bool); ok {
		return n.next.collect(r)
	}
	return nil
}

func (n *mapNode) collectSlots(r *Reading) error {
	var env map[string]any // built at the first expression the VM runs
	for i, x := range n.sxs {
		if x.fn != nil {
			if v, ok := x.fn(r.S); ok {
				n.svals[i] = v
				continue
			}
		}
		if env == nil {
			env = x.envOf(r.S)
		}
		v, err := n.vm.Run(n.progs[i], env)
		if err != nil {
			return n.dl.reading(r, n.stage, "map "+n.fields[i]+": "+err.Error())
		}
		n.svals[i] = slotOf(v)
	}
	for i, idx := range n.outIdx {
		r.S[idx] = n.svals[i]
	}
	return n.next.collect(r)
}

func (n *shuffleNode) collectSlots(r *Reading) error {
	n.keyBuf = n.keyBuf[:0]
	for j, idx := range n.keyIdx {
		v := &r.S[idx]
		if v.kind == slotNil {
			return n.dl.reading(r, n.stage, "missing key field "+n.keyFields[j])
		}
		if v.kind == slotString {
			n.keyBuf = binary.AppendUvarint(n.keyBuf, v.n)
			n.keyBuf = append(n.keyBuf, v.str()...)
			continue
		}
		var ok bool
		if n.partBuf, ok = v.appendKeyPart(n.partBuf[:0]); !ok {
			return n.dl.reading(r, n.stage, fmt.Sprintf("key field %s: want string or number, got %s", n.keyFields[j], v.typeName()))
		}
		n.keyBuf = binary.AppendUvarint(n.keyBuf, uint64(len(n.partBuf)))
		n.keyBuf = append(n.keyBuf, n.partBuf...)
	}
	i, kg, b := n.route()
	start := len(b.vals)
	for j, idx := range n.inIdx {
		v := &r.S[idx]
		if v.kind == slotFloat {
			b.vals = append(b.vals, v.float())
			continue
		}
		b.vals = b.vals[:start]
		if v.kind == slotNil {
			return n.dl.reading(r, n.stage, "missing field "+n.inputs[j])
		}
		return n.dl.reading(r, n.stage, fmt.Sprintf("field %s: want number, got %s", n.inputs[j], v.typeName()))
	}
	return n.add(r, i, kg, b)
}
