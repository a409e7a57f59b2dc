package checkpoint

import (
	"reflect"
	"strings"
	"testing"
)

func TestSchemasRoundTripAndValidate(t *testing.T) {
	md := sampleMetadata()
	md.Schemas = []StageSchema{{
		UID: "per_device", Stage: "per_device_v2", KeyBy: []KeyField{{Name: "site", Type: "string"}},
		Window:     WindowSchema{Type: "tumbling", SizeMs: 60000, AllowedLatenessMs: 1000},
		Aggregates: []AggregateSchema{{Name: "hi", Kind: "max", Field: "t"}, {Name: "n", Kind: "count"}},
		Timers:     "rocksdb", Encoding: 2, Layout: 3,
		OldLayouts: []AggregateLayout{{Layout: 1, Aggregates: []AggregateSchema{{Name: "n", Kind: "count"}}}},
	}}
	b, err := EncodeMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Schemas, md.Schemas) || got.Schema("per_device") == nil || got.Schema("x") != nil {
		t.Fatalf("schemas %+v", got.Schemas)
	}
	for _, tc := range []struct {
		name string
		edit func(*StageSchema)
		msg  string
	}{
		{"empty uid", func(s *StageSchema) { s.UID = "" }, "empty uid"},
		{"no encoding", func(s *StageSchema) { s.Encoding = 0 }, "encoding 0"},
		{"aggregates out of order", func(s *StageSchema) { s.Aggregates[0], s.Aggregates[1] = s.Aggregates[1], s.Aggregates[0] }, "ascending order"},
		{"old layout is the current one", func(s *StageSchema) { s.OldLayouts = []AggregateLayout{{Layout: 3}} }, "old layout 3 is negative or listed twice"},
		{"old layout twice", func(s *StageSchema) { s.OldLayouts = []AggregateLayout{{Layout: 1}, {Layout: 1}} }, "old layout 1"},
		{"old layout aggregates out of order", func(s *StageSchema) {
			s.OldLayouts = []AggregateLayout{{Layout: 1, Aggregates: []AggregateSchema{{Name: "z"}, {Name: "a"}}}}
		}, "aggregates z,a are not distinct"},
	} {
		m := *md
		m.Schemas = []StageSchema{md.Schemas[0]}
		m.Schemas[0].Aggregates = append([]AggregateSchema(nil), md.Schemas[0].Aggregates...)
		tc.edit(&m.Schemas[0])
		if err := m.Validate(); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
	}
}
