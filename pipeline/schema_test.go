package pipeline

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/test/oracle"
)

func schemaSpec(edit func(*JobSpec)) []StageSchema {
	w := WindowSpec{Type: "tumbling", Size: time.Minute}
	s := JobSpec{Stages: []StageSpec{
		{Name: "valid", Filter: "true"},
		{Name: "win", KeyBy: []string{"site", "device"}, Window: &w, Aggregates: map[string]string{"n": "count()", "hi": "max(t)"}},
	}}
	if edit != nil {
		edit(&s)
	}
	return Schemas(&s)
}

// TestCompareEdits is the table of configuration edits × restore outcome.
func TestCompareEdits(t *testing.T) {
	win := func(s *JobSpec) *StageSpec { return &s.Stages[1] }
	for _, tc := range []struct {
		name  string
		edit  func(*JobSpec)
		allow bool
		want  map[string]Outcome // uid → outcome
		msg   []string           // in the refusal
		// changes: each a prefix of one of the stage's Changes
		changes []string
	}{
		{name: "unchanged", want: map[string]Outcome{"win": OutcomeRestore}},
		{name: "filter changed (stateless)", edit: func(s *JobSpec) { s.Stages[0].Filter = "false" }, want: map[string]Outcome{"win": OutcomeRestore}},
		{name: "keyed stage added", edit: func(s *JobSpec) {
			s.Stages = append(s.Stages, StageSpec{Name: "win2", KeyBy: []string{"site"}, Window: &WindowSpec{Type: "tumbling", Size: time.Hour}, Aggregates: map[string]string{"n": "count()"}})
		}, want: map[string]Outcome{"win": OutcomeRestore, "win2": OutcomeEmpty}},
		{name: "keyed stage removed", edit: func(s *JobSpec) { s.Stages = s.Stages[:1] },
			want: map[string]Outcome{"win": OutcomeRefuse}, msg: []string{"stage win (uid win) has state but is not in the configuration", "--allow-non-restored-state"}},
		{name: "keyed stage removed, allowed", edit: func(s *JobSpec) { s.Stages = s.Stages[:1] }, allow: true,
			want: map[string]Outcome{"win": OutcomeDropped}},
		{name: "renamed, uid kept", edit: func(s *JobSpec) { win(s).Name, win(s).UID = "per_minute", "win" },
			want: map[string]Outcome{"win": OutcomeRestore}},
		{name: "renamed without uid", edit: func(s *JobSpec) { win(s).Name = "per_minute" },
			want: map[string]Outcome{"win": OutcomeRefuse, "per_minute": OutcomeEmpty}, msg: []string{"stage win (uid win) has state"}},
		{name: "renamed without uid, allowed", edit: func(s *JobSpec) { win(s).Name = "per_minute" }, allow: true,
			want: map[string]Outcome{"win": OutcomeDropped, "per_minute": OutcomeEmpty}},
		{name: "key field renamed", edit: func(s *JobSpec) { win(s).KeyBy = []string{"site", "sensor"} },
			want: map[string]Outcome{"win": OutcomeRefuse}, msg: []string{"key_by changed from [site device] to [site sensor]", "give the stage a new uid"}},
		{name: "key arity", edit: func(s *JobSpec) { win(s).KeyBy = []string{"device"} },
			want: map[string]Outcome{"win": OutcomeRefuse}, msg: []string{"key_by changed from [site device] to [device]"}},
		{name: "window size", edit: func(s *JobSpec) { win(s).Window = &WindowSpec{Type: "tumbling", Size: 5 * time.Minute} },
			want: map[string]Outcome{"win": OutcomeRefuse}, msg: []string{"window changed from tumbling 1m0s to tumbling 5m0s"}},
		{name: "window type", edit: func(s *JobSpec) { win(s).Window = &WindowSpec{Type: "session", Gap: time.Minute} },
			want: map[string]Outcome{"win": OutcomeRefuse}, msg: []string{"window type changed from tumbling 1m0s to session gap 1m0s"}},
		{name: "aggregate added", edit: func(s *JobSpec) {
			win(s).Aggregates = map[string]string{"n": "count()", "hi": "max(t)", "lo": "min(t)"}
		},
			want: map[string]Outcome{"win": OutcomeMigrate}, changes: []string{"aggregate lo: min(t) added: it starts from its identity in the windows open at the restore, whose results list it in partial"}},
		{name: "aggregate removed", edit: func(s *JobSpec) { win(s).Aggregates = map[string]string{"n": "count()"} },
			want: map[string]Outcome{"win": OutcomeMigrate}, changes: []string{"aggregate hi: max(t) removed: its accumulators are dropped"}},
		{name: "aggregate added and one removed", edit: func(s *JobSpec) { win(s).Aggregates = map[string]string{"n": "count()", "lo": "min(t)"} },
			want: map[string]Outcome{"win": OutcomeMigrate}, changes: []string{"aggregate hi: max(t) removed", "aggregate lo: min(t) added"}},
		{name: "aggregate renamed (removed and added)", edit: func(s *JobSpec) { win(s).Aggregates = map[string]string{"n": "count()", "max_t": "max(t)"} },
			want: map[string]Outcome{"win": OutcomeMigrate}, changes: []string{"aggregate hi: max(t) removed", "aggregate max_t: max(t) added"}},
		{name: "aggregate function changed (removed and added)", edit: func(s *JobSpec) { win(s).Aggregates = map[string]string{"n": "count()", "hi": "min(t)"} },
			want: map[string]Outcome{"win": OutcomeMigrate}, changes: []string{"aggregate hi changed from max(t) to min(t): the old accumulators are dropped"}},
		{name: "aggregate field changed (removed and added)", edit: func(s *JobSpec) { win(s).Aggregates = map[string]string{"n": "count()", "hi": "max(u)"} },
			want: map[string]Outcome{"win": OutcomeMigrate}, changes: []string{"aggregate hi changed from max(t) to max(u)"}},
		{name: "aggregate map reordered in the configuration", edit: func(s *JobSpec) {
			win(s).Aggregates = map[string]string{"hi": "max(t)", "n": "count()"}
		}, want: map[string]Outcome{"win": OutcomeRestore}},
		{name: "aggregate added and allowed_lateness", edit: func(s *JobSpec) {
			win(s).Aggregates = map[string]string{"n": "count()", "hi": "max(t)", "lo": "min(t)"}
			win(s).Window = &WindowSpec{Type: "tumbling", Size: time.Minute, AllowedLateness: 30 * time.Second}
		}, want: map[string]Outcome{"win": OutcomeMigrate}, changes: []string{"allowed_lateness 0s → 30s", "aggregate lo: min(t) added"}},
		{name: "aggregate added and key_by changed", edit: func(s *JobSpec) {
			win(s).Aggregates = map[string]string{"n": "count()", "hi": "max(t)", "lo": "min(t)"}
			win(s).KeyBy = []string{"site"}
		}, want: map[string]Outcome{"win": OutcomeRefuse}, msg: []string{"key_by changed"}},
		{name: "allowed_lateness", edit: func(s *JobSpec) {
			win(s).Window = &WindowSpec{Type: "tumbling", Size: time.Minute, AllowedLateness: 30 * time.Second}
		},
			want: map[string]Outcome{"win": OutcomeMigrate}},
		{name: "timer mode", edit: func(s *JobSpec) { s.State.Timers = "heap" },
			want: map[string]Outcome{"win": OutcomeRefuse}, msg: []string{"state.timers changed from rocksdb to heap"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Compare(schemaSpec(nil), schemaSpec(tc.edit), tc.allow)
			if len(got) != len(tc.want) {
				t.Fatalf("outcomes %+v, want %v", got, tc.want)
			}
			var reasons []string
			for _, o := range got {
				if o.Outcome != tc.want[o.UID] {
					t.Errorf("uid %s: %s, want %s (%+v)", o.UID, o.Outcome, tc.want[o.UID], o)
				}
				if o.Outcome == OutcomeRefuse {
					reasons = append(reasons, o.Reason)
				}
			}
			for _, c := range tc.changes {
				found := false
				for _, o := range got {
					for _, oc := range o.Changes {
						found = found || strings.HasPrefix(oc, c)
					}
				}
				if !found {
					t.Errorf("no change starts with %q: %+v", c, got)
				}
			}
			all := strings.Join(reasons, "; ")
			for _, m := range tc.msg {
				if !strings.Contains(all, m) {
					t.Errorf("refusal %q does not say %q", all, m)
				}
			}
		})
	}
}

func TestCompareNewerEncoding(t *testing.T) {
	old := schemaSpec(nil)
	old[0].Encoding = StateEncoding + 1
	o := Compare(old, schemaSpec(nil), false)
	if o[0].Outcome != OutcomeRefuse || !strings.Contains(o[0].Reason, "encoding version 3") {
		t.Fatalf("%+v", o)
	}
}

func TestStateValueEncodingVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		body []byte
		err  string
	}{
		{"version 0 (no header)", []byte{1, 2}, []byte{1, 2}, ""},
		{"version 1", []byte{0, 1, 5}, []byte{5}, ""},
		{"version 2, layout 0", []byte{0, 2, 0, 5}, []byte{5}, ""},
		{"version 2, layout 300", []byte{0, 2, 0xac, 0x02, 5}, []byte{5}, ""},
		{"version 2, layout 300, empty body", []byte{0, 2, 0xac, 0x02}, []byte{}, ""},
		{"version 2, truncated layout", []byte{0, 2, 0x80}, nil, "truncated"},
		{"unknown version", []byte{0, 9, 5}, nil, "encoding version 9"},
		{"truncated header", []byte{0}, nil, "truncated"},
		{"empty", nil, nil, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, layout, err := stripEncoding(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(b) != string(tc.body) {
				t.Fatalf("%v %v", b, err)
			}
			if want := map[bool]int{true: 300, false: 0}[strings.Contains(tc.name, "layout 300")]; layout != want {
				t.Fatalf("layout %d, want %d", layout, want)
			}
		})
	}
}

// TestRestoreEdits checkpoints with one configuration and restores with
// an edited one: the job restores (results checked against the oracle),
// starts the new stage empty, or is refused with its reason.
func TestRestoreEdits(t *testing.T) {
	extra := StageSpec{Name: "per_site", From: "valid", KeyBy: []string{"site"},
		Window: &WindowSpec{Type: "tumbling", Size: 10 * time.Second}, Aggregates: map[string]string{"n": "count()"}}
	for _, tc := range []struct {
		name   string
		p      int // parallelism of the restore
		edit   func(*JobSpec)
		refuse string
	}{
		{name: "keyed stage added, same parallelism", p: 3, edit: func(s *JobSpec) { s.Stages = append(s.Stages, extra) }},
		{name: "keyed stage added, parallelism 3 to 2", p: 2, edit: func(s *JobSpec) { s.Stages = append(s.Stages, extra) }},
		{name: "renamed with uid", p: 3, edit: func(s *JobSpec) {
			s.Stages[1].Name, s.Stages[1].UID = "per_device", "win"
			s.Sinks[0].From = "per_device"
		}},
		{name: "renamed with uid, parallelism 3 to 4", p: 4, edit: func(s *JobSpec) {
			s.Stages[1].Name, s.Stages[1].UID = "per_device", "win"
			s.Sinks[0].From = "per_device"
		}},
		{name: "allowed_lateness changed", p: 3, edit: func(s *JobSpec) { s.Stages[1].Window.AllowedLateness = 3 * time.Second }},
		{name: "checkpoint without schema", p: 3, edit: func(s *JobSpec) { s.Restore.Schemas = nil }},
		{name: "key_by changed", p: 3, edit: func(s *JobSpec) { s.Stages[1].KeyBy = []string{"device"} },
			refuse: "stage win (uid win): key_by changed from [site device] to [device]"},
		{name: "stage removed", p: 2, edit: func(s *JobSpec) {
			s.Stages[1].Name = "other"
			s.Sinks[0].From = "other"
		}, refuse: "stage win (uid win) has state but is not in the configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, true)
			rs := genReadings(4000, 9, 5)
			h.appendReadings(rs[:2000])
			w := WindowSpec{Type: "tumbling", Size: 5 * time.Second, AllowedLateness: time.Second}
			md, end := h.checkpointThenAppend(h.spec(3, w), rs[2000:])
			if len(md.Schemas) != 1 || md.Schemas[0].UID != "win" || md.Schemas[0].Encoding != StateEncoding {
				t.Fatalf("schemas in _metadata: %+v", md.Schemas)
			}
			spec := h.spec(tc.p, w)
			spec.Restore = md
			tc.edit(&spec)
			if tc.refuse != "" {
				os.RemoveAll(spec.State.Dir)
				job, err := NewJob(spec, nil, testLogger())
				var se *IncompatibleStateError
				if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.refuse) {
					if job != nil {
						job.Close()
					}
					t.Fatalf("NewJob: %v, want a refusal saying %q", err, tc.refuse)
				}
				spec.AllowNonRestoredState = true // the way out the message names
				if !strings.Contains(tc.name, "removed") {
					return
				}
			}
			want := oracle.Compute(toOracle(rs), oracle.Window{Type: "tumbling", Size: 5000}, testAggs, end.ts-2000)
			if tc.refuse != "" { // the stage restarted empty: only windows after the checkpoint are whole
				var last int64
				for _, r := range want {
					last = max(last, r.End)
				}
				h.run(spec, func() bool {
					for _, r := range finals(t, h.out.snapshot()) {
						if r.WindowEnd == last {
							return true
						}
					}
					return false
				})
				return
			}
			h.run(spec, func() bool { return len(finals(t, h.out.snapshot())) >= len(want) })
			compare(t, finals(t, h.out.snapshot()), want)
		})
	}
}
