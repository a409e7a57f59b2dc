package pipeline

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/eddy-stream/eddy/storage/checkpoint"
)

// StageSchema is the state schema of one keyed stage, as checkpoints
// record it (checkpoint.StageSchema).
type StageSchema = checkpoint.StageSchema

// StateEncoding is the version of the state value encoding this build
// writes (window.go, encodeEntry). It reads every version up to it.
// Version 2 added the aggregate layout to the header and the partial flag
// to each accumulator (aggmigrate.go).
const StateEncoding = 2

// StateUID returns the uid the stage's state is known by: UID, or Name
// when UID is empty.
func (s *StageSpec) StateUID() string {
	if s.UID != "" {
		return s.UID
	}
	return s.Name
}

// Schemas returns the state schema of every keyed stage of spec, in
// ascending uid order. A stage whose aggregates do not parse is listed
// without them (NewJob refuses it anyway).
func Schemas(spec *JobSpec) []StageSchema {
	timers := spec.State.Timers
	if timers == "" {
		timers = "rocksdb"
	}
	var out []StageSchema
	for i := range spec.Stages {
		s := &spec.Stages[i]
		if !s.Keyed() {
			continue
		}
		sc := StageSchema{UID: s.StateUID(), Stage: s.Name, Timers: timers, Encoding: StateEncoding}
		for _, k := range s.KeyBy {
			sc.KeyBy = append(sc.KeyBy, checkpoint.KeyField{Name: k, Type: "string"})
		}
		if w := s.Window; w != nil {
			sc.Window = checkpoint.WindowSchema{
				Type: w.Type, SizeMs: w.Size.Milliseconds(), SlideMs: w.Slide.Milliseconds(),
				GapMs: w.Gap.Milliseconds(), AllowedLatenessMs: w.AllowedLateness.Milliseconds(),
			}
		}
		if p, err := compileAggregates(s.Aggregates); err == nil {
			for _, a := range p.aggs {
				as := checkpoint.AggregateSchema{Name: a.name, Kind: a.fn.String()}
				if a.input >= 0 {
					as.Field = p.inputs[a.input]
				}
				sc.Aggregates = append(sc.Aggregates, as)
			}
		}
		out = append(out, sc)
	}
	slices.SortFunc(out, func(a, b StageSchema) int { return strings.Compare(a.UID, b.UID) })
	return out
}

// Outcome is what a restore does with one stage's state.
type Outcome string

// Restore outcomes.
const (
	// OutcomeRestore: same schema (or schema unknown): the state is restored.
	OutcomeRestore Outcome = "restore"
	// OutcomeMigrate: a compatible change (allowed_lateness; aggregates
	// added, removed or changed): the state is restored and the change
	// applies from now on; added aggregates start from their identity in
	// the windows open at the restore (aggmigrate.go).
	OutcomeMigrate Outcome = "migrate"
	// OutcomeEmpty: a stage new in the configuration starts with no state.
	OutcomeEmpty Outcome = "empty"
	// OutcomeDropped: a stage in the state but not in the configuration,
	// dropped because non-restored state is allowed.
	OutcomeDropped Outcome = "dropped"
	// OutcomeRefuse: the state cannot be restored into the configured stage.
	OutcomeRefuse Outcome = "refuse"
)

// StageOutcome is the restore decision for one uid.
type StageOutcome struct {
	UID      string  `json:"uid"`
	Stage    string  `json:"stage,omitempty"`     // name in the configuration; "" if not configured
	OldStage string  `json:"old_stage,omitempty"` // name in the state; "" if it has no state
	Outcome  Outcome `json:"outcome"`
	// Changes lists what differs between the state and the configuration,
	// one phrase each ("allowed_lateness 0s → 1m0s").
	Changes []string `json:"changes,omitempty"`
	// Reason says, for OutcomeRefuse, what is wrong and what to do.
	Reason string `json:"reason,omitempty"`
}

// whatToDo ends every refusal of an incompatible change.
const whatToDo = "change it back to restore this stage's state, or give the stage a new uid: " +
	"(so it starts empty) and start with --allow-non-restored-state " +
	"(checkpointing.allow_non_restored_state: true) to drop the old state"

// Compare decides, per uid, what restoring state with schemas old into a
// job with schemas cur does. A stage is matched by uid; the result is in
// ascending uid order. allowNonRestored turns the refusal of a stage that
// has state but is not configured into OutcomeDropped.
func Compare(old, cur []StageSchema, allowNonRestored bool) []StageOutcome {
	byUID := map[string]*StageSchema{}
	for i := range old {
		byUID[old[i].UID] = &old[i]
	}
	seen := map[string]bool{}
	var out []StageOutcome
	for i := range cur {
		n := &cur[i]
		seen[n.UID] = true
		o := byUID[n.UID]
		if o == nil {
			out = append(out, StageOutcome{UID: n.UID, Stage: n.Stage, Outcome: OutcomeEmpty})
			continue
		}
		out = append(out, compareStage(o, n))
	}
	for i := range old {
		o := &old[i]
		if seen[o.UID] {
			continue
		}
		so := StageOutcome{UID: o.UID, OldStage: o.Stage, Outcome: OutcomeDropped}
		if !allowNonRestored {
			so.Outcome = OutcomeRefuse
			so.Reason = fmt.Sprintf("stage %s (uid %s) has state but is not in the configuration: "+
				"put it back (same name, or uid: %s), or start with --allow-non-restored-state "+
				"(checkpointing.allow_non_restored_state: true) to drop its state", o.Stage, o.UID, o.UID)
		}
		out = append(out, so)
	}
	slices.SortFunc(out, func(a, b StageOutcome) int { return strings.Compare(a.UID, b.UID) })
	return out
}

func compareStage(o, n *StageSchema) StageOutcome {
	so := StageOutcome{UID: n.UID, Stage: n.Stage, OldStage: o.Stage, Outcome: OutcomeRestore}
	var refused []string
	refuse := func(format string, args ...any) { refused = append(refused, fmt.Sprintf(format, args...)) }
	if o.Stage != n.Stage {
		so.Changes = append(so.Changes, fmt.Sprintf("renamed from %s", o.Stage))
	}
	if o.Encoding > StateEncoding {
		refuse("its state has encoding version %d, this eddy reads versions up to %d (the state was written by a newer eddy: run that one)",
			o.Encoding, StateEncoding)
	}
	if ok, nk := keyNames(o.KeyBy), keyNames(n.KeyBy); !slices.Equal(o.KeyBy, n.KeyBy) {
		refuse("key_by changed from [%s] to [%s]", ok, nk)
	}
	ow, nw := o.Window, n.Window
	switch {
	case ow.Type != nw.Type:
		refuse("window type changed from %s to %s", ow, nw)
	case ow.SizeMs != nw.SizeMs || ow.SlideMs != nw.SlideMs || ow.GapMs != nw.GapMs:
		refuse("window changed from %s to %s", ow, nw)
	}
	if o.Timers != n.Timers {
		refuse("state.timers changed from %s to %s (timers are kept in the state)", o.Timers, n.Timers)
	}
	if len(refused) > 0 {
		so.Outcome = OutcomeRefuse
		so.Reason = fmt.Sprintf("stage %s (uid %s): %s: %s", n.Stage, n.UID, strings.Join(refused, "; "), whatToDo)
		return so
	}
	if ol, nl := ow.AllowedLatenessMs, nw.AllowedLatenessMs; ol != nl {
		so.Outcome = OutcomeMigrate
		so.Changes = append(so.Changes, fmt.Sprintf("allowed_lateness %s → %s", msString(ol), msString(nl)))
	}
	if ch := aggregateChanges(o.Aggregates, n.Aggregates); len(ch) > 0 {
		so.Outcome = OutcomeMigrate
		so.Changes = append(so.Changes, ch...)
	}
	return so
}

func keyNames(ks []checkpoint.KeyField) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = k.Name
	}
	return strings.Join(parts, " ")
}

func aggList(as []checkpoint.AggregateSchema) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.Name + ": " + a.Kind + "(" + a.Field + ")"
	}
	return strings.Join(parts, ", ")
}

func msString(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).String()
}

// IncompatibleStateError refuses a restore: the checkpoint's state does not
// fit the configured pipeline. Refused holds the refused stages, each with
// its reason.
type IncompatibleStateError struct {
	Checkpoint int64
	Refused    []StageOutcome
}

func (e *IncompatibleStateError) Error() string {
	rs := make([]string, len(e.Refused))
	for i, r := range e.Refused {
		rs[i] = r.Reason
	}
	return fmt.Sprintf("pipeline: checkpoint %d cannot be restored into this configuration: %s",
		e.Checkpoint, strings.Join(rs, "; "))
}

// stripEncoding checks the encoding header of a state value (see
// encodeEntry) and returns the body and the aggregate layout the value was
// written with. Versions 0 (no header) and 1 are layout 0; version 2
// names its layout. Any other version is an error naming it: bytes are
// never decoded under a layout they were not written with.
func stripEncoding(b []byte) (body []byte, layout int, err error) {
	if len(b) == 0 {
		return nil, 0, errShortValue
	}
	if b[0] != 0 {
		return b, 0, nil // encoding 0
	}
	if len(b) < 2 {
		return nil, 0, errShortValue
	}
	switch v := b[1]; v {
	case 1:
		return b[2:], 0, nil
	case 2:
		l, n := binary.Uvarint(b[2:])
		if n <= 0 || l > math.MaxInt32 {
			return nil, 0, errShortValue
		}
		return b[2+n:], int(l), nil
	default:
		return nil, 0, fmt.Errorf("pipeline: state value has encoding version %d; this eddy reads versions 0 to %d", v, StateEncoding)
	}
}
