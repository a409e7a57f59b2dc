package timers

import (
	"slices"

	"github.com/eddy-stream/eddy/storage/keygroup"
)

// queue is a set of encoded timers partitioned by key group, as Flink's
// KeyGroupPartitionedPriorityQueue: a min-heap per key group and a heap of
// the key groups ordered by their heads, so peek is O(1) and add and
// remove are O(log n).
type queue struct {
	r     keygroup.Range
	kgs   []*kgQueue // by key group − r.Start, nil until used
	heads iheap[*kgQueue]
	set   map[string]*entry
}

type kgQueue struct {
	kg  uint16
	h   iheap[*entry]
	pos int // in heads, −1 when empty
}

type entry struct {
	k   string
	pos int
}

func newQueue(r keygroup.Range) *queue {
	return &queue{
		r:     r,
		kgs:   make([]*kgQueue, r.Len()),
		heads: iheap[*kgQueue]{less: func(a, b *kgQueue) bool { return less(a.h.s[0].k, b.h.s[0].k) }, setPos: func(q *kgQueue, i int) { q.pos = i }},
		set:   map[string]*entry{},
	}
}

func (q *queue) len() int { return len(q.set) }

// add inserts k unless present and reports whether it did.
func (q *queue) add(k string) bool {
	if _, ok := q.set[k]; ok {
		return false
	}
	e := &entry{k: k}
	q.set[k] = e
	i := int(keyGroupOf(k) - q.r.Start)
	g := q.kgs[i]
	if g == nil {
		g = &kgQueue{kg: keyGroupOf(k), pos: -1, h: iheap[*entry]{
			less: func(a, b *entry) bool { return a.k < b.k }, setPos: func(e *entry, i int) { e.pos = i }}}
		q.kgs[i] = g
	}
	g.h.push(e)
	switch {
	case g.pos < 0:
		q.heads.push(g)
	case e.pos == 0:
		q.heads.fix(g.pos)
	}
	return true
}

// remove deletes k and reports whether it was present.
func (q *queue) remove(k string) bool {
	e, ok := q.set[k]
	if !ok {
		return false
	}
	delete(q.set, k)
	g := q.kgs[keyGroupOf(k)-q.r.Start]
	head := e.pos == 0
	g.h.remove(e.pos)
	switch {
	case len(g.h.s) == 0:
		q.heads.remove(g.pos)
	case head:
		q.heads.fix(g.pos)
	}
	return true
}

// peek returns the least timer.
func (q *queue) peek() (string, bool) {
	if len(q.heads.s) == 0 {
		return "", false
	}
	return q.heads.s[0].h.s[0].k, true
}

// sorted calls fn for each non-empty key group in order with its timers
// in order.
func (q *queue) sorted(fn func(kg uint16, ks []string) error) error {
	var ks []string
	for _, g := range q.kgs {
		if g == nil || len(g.h.s) == 0 {
			continue
		}
		ks = ks[:0]
		for _, e := range g.h.s {
			ks = append(ks, e.k)
		}
		slices.Sort(ks)
		if err := fn(g.kg, ks); err != nil {
			return err
		}
	}
	return nil
}

// iheap is a binary min-heap that tells each element its index.
type iheap[T any] struct {
	s      []T
	less   func(a, b T) bool
	setPos func(x T, i int)
}

func (h *iheap[T]) push(x T) {
	h.s = append(h.s, x)
	h.setPos(x, len(h.s)-1)
	h.up(len(h.s) - 1)
}

func (h *iheap[T]) remove(i int) {
	n := len(h.s) - 1
	h.setPos(h.s[i], -1)
	if i != n {
		h.s[i] = h.s[n]
		h.setPos(h.s[i], i)
	}
	var zero T
	h.s[n] = zero
	h.s = h.s[:n]
	if i != n {
		h.fix(i)
	}
}

func (h *iheap[T]) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *iheap[T]) swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	h.setPos(h.s[i], i)
	h.setPos(h.s[j], j)
}

func (h *iheap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(h.s[j], h.s[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *iheap[T]) down(i0 int) bool {
	i, n := i0, len(h.s)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if j2 := j + 1; j2 < n && h.less(h.s[j2], h.s[j]) {
			j = j2
		}
		if !h.less(h.s[j], h.s[i]) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
