package checkpoint

import (
	"slices"
	"strings"
	"time"
)

// StageSchema is the state schema of one stateful (keyed window) stage as
// _metadata records it: everything the bytes of the stage's state depend
// on, so that a restore can tell whether the configured stage can read
// them. A restore matches stages by UID, never by position.
type StageSchema struct {
	// UID identifies the stage's state across configuration changes: the
	// stage's uid: key, or its name when it has none.
	UID string `json:"uid"`
	// Stage is the stage's name when the checkpoint was taken; its task
	// directories are <Stage>-<i>.
	Stage string `json:"stage"`
	// KeyBy lists the key fields in key order.
	KeyBy []KeyField `json:"key_by"`
	// Window is the window assigner.
	Window WindowSchema `json:"window"`
	// Aggregates lists the aggregates in the order their accumulators are
	// encoded in a window (ascending name).
	Aggregates []AggregateSchema `json:"aggregates"`
	// Timers is the timer service: rocksdb or heap.
	Timers string `json:"timers"`
	// Encoding is the version of the state value encoding (see
	// docs/state-layout.md, "State values").
	Encoding int `json:"encoding"`
	// Layout numbers the aggregate list Aggregates. Values of encoding 2
	// carry the layout they were written with in their header; values of
	// encodings 0 and 1 are layout 0. It changes when an aggregate
	// migration changes the list (added, removed or changed aggregates).
	Layout int `json:"layout,omitempty"`
	// OldLayouts are the earlier aggregate lists whose values the state
	// may still hold: written before an aggregate migration and not
	// rewritten since (a value is rewritten in Layout when its key is next
	// written). A value is decoded under the list of the layout it names,
	// never under another.
	OldLayouts []AggregateLayout `json:"old_layouts,omitempty"`
}

// AggregateLayout is one earlier aggregate list of a stage.
type AggregateLayout struct {
	Layout     int               `json:"layout"`
	Aggregates []AggregateSchema `json:"aggregates"`
}

// KeyField is one key field: its name and the type of its values.
type KeyField struct {
	Name string `json:"name"`
	Type string `json:"type"` // "string": key values are the field's text
}

// WindowSchema is a window assigner; durations are milliseconds.
type WindowSchema struct {
	Type              string `json:"type"` // tumbling | sliding | session
	SizeMs            int64  `json:"size_ms,omitempty"`
	SlideMs           int64  `json:"slide_ms,omitempty"`
	GapMs             int64  `json:"gap_ms,omitempty"`
	AllowedLatenessMs int64  `json:"allowed_lateness_ms,omitempty"`
}

// AggregateSchema is one aggregate: its output name, its function (the
// kind of accumulator) and the field it reads ("" for count()).
type AggregateSchema struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Field string `json:"field,omitempty"`
}

// Schema returns the schema recorded for uid, nil if there is none.
func (md *Metadata) Schema(uid string) *StageSchema {
	for i := range md.Schemas {
		if md.Schemas[i].UID == uid {
			return &md.Schemas[i]
		}
	}
	return nil
}

// validateSchemas lists what is wrong with md.Schemas.
func (md *Metadata) validateSchemas(add func(format string, args ...any)) {
	seen := map[string]bool{}
	stages := map[string]bool{}
	for _, s := range md.Schemas {
		switch {
		case s.UID == "":
			add("schema of stage %q: empty uid", s.Stage)
		case seen[s.UID]:
			add("schema: uid %s listed twice", s.UID)
		}
		seen[s.UID] = true
		if s.Stage == "" {
			add("schema %s: empty stage name", s.UID)
		} else if stages[s.Stage] {
			add("schema %s: stage %s has two schemas", s.UID, s.Stage)
		}
		stages[s.Stage] = true
		if s.Encoding < 1 {
			add("schema %s: encoding %d, want >= 1", s.UID, s.Encoding)
		}
		validAggregates(s.UID, s.Aggregates, add)
		layouts := map[int]bool{s.Layout: true}
		if s.Layout < 0 {
			add("schema %s: layout %d, want >= 0", s.UID, s.Layout)
		}
		for _, l := range s.OldLayouts {
			if l.Layout < 0 || layouts[l.Layout] {
				add("schema %s: old layout %d is negative or listed twice", s.UID, l.Layout)
			}
			layouts[l.Layout] = true
			validAggregates(s.UID, l.Aggregates, add)
		}
	}
}

func validAggregates(uid string, as []AggregateSchema, add func(format string, args ...any)) {
	names := make([]string, len(as))
	for i, a := range as {
		names[i] = a.Name
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		add("schema %s: aggregates %s are not distinct and in ascending order", uid, strings.Join(names, ","))
	}
}

// String formats a window for messages: "tumbling 1m0s", "sliding 10m0s/1m0s",
// "session gap 30s".
func (w WindowSchema) String() string {
	d := func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }
	switch w.Type {
	case "sliding":
		return "sliding " + d(w.SizeMs) + " slide " + d(w.SlideMs)
	case "session":
		return "session gap " + d(w.GapMs)
	}
	return w.Type + " " + d(w.SizeMs)
}
