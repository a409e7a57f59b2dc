package web

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// The "Last reload" figure shows the outcome of the overview's
// last_reload, what changed or why it was refused, and the savepoint.
func TestLastReloadKPI(t *testing.T) {
	kpi := regexp.MustCompile(`<div class="kpi ([a-z]*)"><div class="label">Last reload</div><div class="value">([^<]*)</div><div class="sub">([^<]*)</div>`)
	when := time.Now().Add(-90 * time.Second).UTC().Format(time.RFC3339)
	base := strings.TrimSuffix(overviewJSON(0), "}")
	for _, c := range []struct {
		name, reload     string
		class, value     string
		subHas, subLacks []string
	}{
		{"applied", `{"time":"` + when + `","outcome":"applied","keys":["pipeline","sinks"],"savepoint":"reload-20261202T190000Z"}`,
			"ok", "applied", []string{"pipeline, sinks", "savepoint reload-20261202T190000Z", "ago"}, nil},
		{"refused", `{"time":"` + when + `","outcome":"refused","keys":["pipeline"],"reason":"stage per_device: key_by changed from [site device] to [device]"}`,
			"warn", "refused", []string{"key_by changed from [site device] to [device]"}, []string{"savepoint"}},
		{"nothing changed, keys null", `{"time":"` + when + `","outcome":"applied","keys":null}`,
			"ok", "applied", []string{"nothing changed"}, nil},
		{"failed", `{"time":"` + when + `","outcome":"failed","keys":["pipeline"],"reason":"new job did not start"}`,
			"bad", "failed", []string{"new job did not start"}, nil},
		{"none", "", "", "–", []string{"none since start"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			overview := base + "}"
			if c.reload != "" {
				overview = base + `,"last_reload":` + c.reload + "}"
			}
			dom := pageDOM(t, overview)
			m := kpi.FindStringSubmatch(dom)
			if m == nil {
				t.Fatalf("no Last reload figure in the page:\n%s", dom)
			}
			if m[1] != c.class || m[2] != c.value {
				t.Errorf("Last reload = class %q value %q, want %q %q", m[1], m[2], c.class, c.value)
			}
			for _, w := range c.subHas {
				if !strings.Contains(m[3], w) {
					t.Errorf("Last reload line %q lacks %q", m[3], w)
				}
			}
			for _, w := range c.subLacks {
				if strings.Contains(m[3], w) {
					t.Errorf("Last reload line %q has %q", m[3], w)
				}
			}
		})
	}
}
