package pipeline

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// Aggregate migration: a restore into a stage whose aggregate list differs
// from the one its state was written with (added, removed or changed
// aggregates) migrates the state instead of refusing it.
//
// An aggregate is the same one when its name, function and field are the
// same. A changed function or field under the same name is the old
// aggregate removed and a new one added: the old accumulator is dropped
// (it cannot be turned into the new one) and the new one starts from its
// identity, as an added one does.
//
// The migration is lazy, per key: the restore rewrites nothing. Every
// aggregate list a stage has had gets a layout number (StageSchema.Layout;
// the lists still in the state are StageSchema.OldLayouts). A value of
// encoding 2 names its layout in its header; values of encodings 0 and 1
// are layout 0. When the window operator reads a value (windowOp.entry), it
// decodes it under the list of the layout the value names — never under
// another — and maps its accumulators to the current list: kept ones move
// to their new position, removed ones are dropped, added ones start from
// their identity, flagged partial in every window the value holds (those
// were open at the restore and their earlier readings are gone). The next
// write of the key writes the current layout. Every key with an open
// window has a timer, so the old values are rewritten or deleted as their
// windows fire and expire; no restore has to read and rewrite the whole
// state (1 GiB on a small box: a GiB read and written before the first reading,
// and an incremental checkpoint re-uploading every file) to apply an edit
// of the aggregate list.
//
// Results of windows with a partial aggregate list it in "partial"
// (Result.Partial, sinknode.go); windows opened after the restore are
// whole.

// aggregateChanges lists, one phrase each, how the aggregate list cur
// differs from old; nil when they are the same.
func aggregateChanges(old, cur []checkpoint.AggregateSchema) []string {
	if slices.Equal(old, cur) {
		return nil
	}
	byName := func(as []checkpoint.AggregateSchema) map[string]checkpoint.AggregateSchema {
		m := map[string]checkpoint.AggregateSchema{}
		for _, a := range as {
			m[a.Name] = a
		}
		return m
	}
	om, nm := byName(old), byName(cur)
	names := map[string]bool{}
	for n := range om {
		names[n] = true
	}
	for n := range nm {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var out []string
	for _, n := range sorted {
		o, inOld := om[n]
		c, inCur := nm[n]
		switch {
		case !inOld:
			out = append(out, fmt.Sprintf("aggregate %s added: it starts from its identity in the windows open at the restore, whose results list it in partial", aggString(c)))
		case !inCur:
			out = append(out, fmt.Sprintf("aggregate %s removed: its accumulators are dropped", aggString(o)))
		case o != c:
			out = append(out, fmt.Sprintf("aggregate %s changed from %s to %s: the old accumulators are dropped and it starts from its identity in the windows open at the restore, whose results list it in partial",
				n, aggFunc(o), aggFunc(c)))
		}
	}
	return out
}

func aggFunc(a checkpoint.AggregateSchema) string { return a.Kind + "(" + a.Field + ")" }

func aggString(a checkpoint.AggregateSchema) string { return a.Name + ": " + aggFunc(a) }

// migrateSchema gives cur, the configured schema of a stage restored from
// state with schema old, the layouts of the state: old's layout when the
// aggregate list is the same, else a new layout, with old's list among the
// old layouts the state may hold.
func migrateSchema(old, cur *StageSchema) {
	cur.OldLayouts = slices.Clone(old.OldLayouts)
	if slices.Equal(old.Aggregates, cur.Aggregates) {
		cur.Layout = old.Layout
		return
	}
	next := old.Layout
	for _, l := range old.OldLayouts {
		next = max(next, l.Layout)
	}
	cur.OldLayouts = append(cur.OldLayouts, checkpoint.AggregateLayout{Layout: old.Layout, Aggregates: slices.Clone(old.Aggregates)})
	slices.SortFunc(cur.OldLayouts, func(a, b checkpoint.AggregateLayout) int { return a.Layout - b.Layout })
	cur.Layout = next + 1
}

// layoutReader decodes the accumulators of a value written under an old
// layout and maps them to the current aggregate list.
type layoutReader struct {
	fns   []lang.Func // the old list's functions, in encoding order
	to    []int       // old index → current index; -1: removed
	added []int       // current indices the old list does not have
}

// stageLayouts returns a reader for every old layout of schema sc, whose
// current aggregate list is p (in the same order as sc.Aggregates).
func stageLayouts(sc *StageSchema, p *aggPlan) (map[int]*layoutReader, error) {
	if sc == nil || len(sc.OldLayouts) == 0 {
		return nil, nil
	}
	out := map[int]*layoutReader{}
	for _, l := range sc.OldLayouts {
		r := &layoutReader{}
		seen := make([]bool, len(sc.Aggregates))
		for _, a := range l.Aggregates {
			fn, err := aggFn(a)
			if err != nil {
				return nil, fmt.Errorf("stage %s: layout %d: %w", sc.Stage, l.Layout, err)
			}
			r.fns = append(r.fns, fn)
			j := slices.Index(sc.Aggregates, a)
			r.to = append(r.to, j)
			if j >= 0 {
				seen[j] = true
			}
		}
		for j := range p.aggs {
			if j >= len(seen) || !seen[j] {
				r.added = append(r.added, j)
			}
		}
		out[l.Layout] = r
	}
	return out, nil
}

func aggFn(a checkpoint.AggregateSchema) (lang.Func, error) {
	fn, _, err := lang.ParseAggregate(aggFunc(a))
	if err != nil {
		return 0, fmt.Errorf("aggregate %s: %w", a.Name, err)
	}
	return fn, nil
}

// planOfSchema compiles the aggregate list of a recorded schema.
func planOfSchema(as []checkpoint.AggregateSchema) (*aggPlan, error) {
	m := make(map[string]string, len(as))
	for _, a := range as {
		m[a.Name] = aggFunc(a)
	}
	return compileAggregates(m)
}

// schemaOf returns the job's schema of the stage named stage; nil if none.
func (j *Job) schemaOf(stage string) *StageSchema {
	for i := range j.schemas {
		if j.schemas[i].Stage == stage {
			return &j.schemas[i]
		}
	}
	return nil
}

// setLayouts gives the window operator its stage's layout and the readers
// of the old layouts its state may hold.
func (op *windowOp) setLayouts(sc *StageSchema) error {
	if sc == nil {
		return nil
	}
	var err error
	op.layout = sc.Layout
	op.layouts, err = stageLayouts(sc, op.plan)
	return err
}

func layoutList(op *windowOp) string {
	ls := []string{fmt.Sprint(op.layout)}
	for l := range op.layouts {
		ls = append(ls, fmt.Sprint(l))
	}
	slices.Sort(ls)
	return strings.Join(ls, ", ")
}
