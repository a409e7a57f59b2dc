package pipeline

// Pre-aggregation: a keyed task hands the window operator a whole batch, and
// the operator touches the write-back cache (and, on a miss, RocksDB) once
// per distinct key of the batch instead of once per reading.
//
// The watermark does not move inside a batch (watermarks travel between
// batches), so whether a window of a reading is on time is known from its
// event time alone: a window whose last millisecond is after the watermark
// has never fired and cannot fire while the batch runs. Those (reading,
// window) pairs are grouped by key and folded in, in arrival order, so every
// accumulator sees the same additions in the same order as on the
// per-reading path and the results are bit for bit the same (float sums are
// not associative: partial sums would not be). Everything that can produce
// output — a reading for a window at or behind the watermark (a late
// firing, a window created late, a late dead letter) — takes the per-reading
// path in arrival order before the grouped pass. A window is wholly in one
// of the two passes (its class depends only on its end), so the order of
// additions per window is kept. Session windows merge by event time and
// are not pre-aggregated: they take the per-reading path.

// preAgg is the reusable scratch of processBatch.
type preAgg struct {
	group map[string]int32 // key → index into heads, per batch
	heads []int32          // first event of each group
	tails []int32
	next  []int32 // next event of the same group, -1 at the end
}

// processBatch adds the events of one batch, after reading the state of
// the keys the cache misses (prefetch); the cache is within its bounds
// again at the end. stop reports an error raised by the output callbacks;
// the batch stops at the first one.
func (op *windowOp) processBatch(evs []event, stop func() error) error {
	if err := op.prefetch(evs); err != nil {
		return err
	}
	if err := op.addBatch(evs, stop); err != nil {
		return err
	}
	return op.maybeEvict() // a batch that ends in late readings evicted nothing
}

func (op *windowOp) addBatch(evs []event, stop func() error) error {
	if op.asg.kind == session || op.noPreAgg {
		for i := range evs {
			if err := op.process(&evs[i]); err != nil {
				return err
			}
			if err := stop(); err != nil {
				return err
			}
		}
		return nil
	}
	p := &op.pre
	if p.group == nil {
		p.group = map[string]int32{}
	}
	clear(p.group)
	p.heads, p.tails = p.heads[:0], p.tails[:0]
	p.next = p.next[:0]
	last := int32(-1) // group of the previous on-time event
	for i := range evs {
		ev := &evs[i]
		p.next = append(p.next, -1)
		onTime, err := op.processBehind(ev)
		if err != nil {
			return err
		}
		if err := stop(); err != nil {
			return err
		}
		if !onTime {
			continue
		}
		// Readings of one device usually come in runs (one message is one
		// device): the previous event's group saves the map lookup.
		g := last
		if g < 0 || evs[p.heads[g]].key != ev.key {
			var ok bool
			if g, ok = p.group[ev.key]; !ok {
				g = int32(len(p.heads))
				p.group[ev.key] = g
				p.heads = append(p.heads, int32(i))
				p.tails = append(p.tails, int32(i))
				last = g
				continue
			}
		}
		p.next[p.tails[g]] = int32(i)
		p.tails[g] = int32(i)
		last = g
	}
	for _, h := range p.heads {
		if err := op.addGroup(evs, h); err != nil {
			return err
		}
		if err := stop(); err != nil {
			return err
		}
	}
	return nil
}

// processBehind does the per-reading part of ev: its windows whose end is
// at or behind the watermark, and the late dead letter if no window takes
// it. It reports whether ev has a window after the watermark, left for the
// grouped pass.
func (op *windowOp) processBehind(ev *event) (onTime bool, err error) {
	op.asgBuf = op.asg.assign(ev.ts, op.asgBuf[:0])
	behind := false
	for _, se := range op.asgBuf {
		switch {
		case se.end-1 > op.wm:
			onTime = true
		case se.end-1+op.asg.lag > op.wm:
			behind = true
		}
	}
	if !onTime && !behind {
		op.lateSeen++
		op.late(ev, lateReason(ev.ts, op.wm))
		return false, nil
	}
	if !behind {
		return true, nil
	}
	e, err := op.entry(ev.kg, ev.key)
	if err != nil {
		return false, err
	}
	for _, se := range op.asgBuf {
		if se.end-1 > op.wm || se.end-1+op.asg.lag <= op.wm {
			continue
		}
		w := op.window(e, se)
		op.addTo(w, ev)
		if w.firings > 0 {
			op.fire(e, w)
		}
	}
	op.markDirty(e)
	return onTime, op.maybeEvict()
}

// addGroup folds the on-time windows of the events of one key (the chain
// from head) into the key's entry: one cache lookup for the group.
func (op *windowOp) addGroup(evs []event, head int32) error {
	first := &evs[head]
	e, err := op.entry(first.kg, first.key)
	if err != nil {
		return err
	}
	var lastW *win
	for i := head; i >= 0; i = op.pre.next[i] {
		ev := &evs[i]
		op.asgBuf = op.asg.assign(ev.ts, op.asgBuf[:0])
		for _, se := range op.asgBuf {
			if se.end-1 <= op.wm {
				continue // done by processBehind
			}
			w := lastW
			if w == nil || w.start != se.start || w.end != se.end {
				w = op.window(e, se)
				lastW = w
			}
			op.addTo(w, ev)
			if w.firings > 0 {
				// Only after a rescale or restore that lowered the
				// watermark below a window that already fired.
				op.fire(e, w)
			}
		}
	}
	op.markDirty(e)
	return op.maybeEvict()
}
