package lang

import (
	"strings"
	"testing"
)

func TestParseAggregate(t *testing.T) {
	tests := []struct {
		in    string
		fn    Func
		field string
		err   string
	}{
		{in: "count()", fn: Count},
		{in: " count ( ) ", fn: Count},
		{in: "avg(temperature)", fn: Avg, field: "temperature"},
		{in: " avg( temperature ) ", fn: Avg, field: "temperature"},
		{in: "max( payload.temp )", fn: Max, field: "payload.temp"},
		{in: "first(ts)", fn: First, field: "ts"},
		{in: "last(ts)", fn: Last, field: "ts"},
		{in: "sum(x)", fn: Sum, field: "x"},
		{in: "min(x)", fn: Min, field: "x"},
		{in: "median(x)", err: `unknown function "median"`},
		{in: "count(x)", err: "takes no field"},
		{in: "avg()", err: "needs a field"},
		{in: "avg(a, b)", err: "must be count() or fn(field)"},
		{in: "avg(1x)", err: "field must match"},
		{in: "avg(x", err: "must be count() or fn(field)"},
		{in: "avg", err: "must be count() or fn(field)"},
		{in: "", err: "must be count() or fn(field)"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			fn, field, err := ParseAggregate(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || fn != tc.fn || field != tc.field {
				t.Fatalf("got (%v, %q, %v), want (%v, %q)", fn, field, err, tc.fn, tc.field)
			}
		})
	}
	for f := Count; f <= Last; f++ {
		if fn, _, err := ParseAggregate(f.String() + "(x)"); f != Count && (err != nil || fn != f) {
			t.Errorf("%v: name does not parse back: %v %v", f, fn, err)
		}
	}
}

func TestTemplate(t *testing.T) {
	tm, err := ParseTemplate("results/{site}/{device}")
	if err != nil {
		t.Fatal(err)
	}
	if f := tm.Fields(); len(f) != 2 || f[0] != "site" || f[1] != "device" {
		t.Errorf("fields = %q", f)
	}
	got := string(tm.Render(nil, func(f string) string { return map[string]string{"site": "s1", "device": "d/2"}[f] }))
	if got != "results/s1/d/2" {
		t.Errorf("render = %q", got)
	}
	for bad, msg := range map[string]string{
		"a/{b": "{ without a }", "a}/b": "} without a {", "{a": "{ without a }", "a/{}": "empty placeholder", "{a{b}": "{ without a }",
	} {
		if _, err := ParseTemplate(bad); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: err = %v, want %q", bad, err, msg)
		}
	}
}

func TestExpressions(t *testing.T) {
	if _, err := CompileFilter("temperature > 20 && site == 's1'"); err != nil {
		t.Error(err)
	}
	if _, err := CompileFilter("1 + 2"); err == nil {
		t.Error("a filter that is not boolean compiled")
	}
	if _, err := CompileMap("temperature * 9 / 5 + 32"); err != nil {
		t.Error(err)
	}
	if _, err := CompileMap("temperature * * 2"); err == nil {
		t.Error("bad syntax compiled")
	}
}
