package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// baseYAML is a small valid configuration. Cases replace whole top-level
// sections of it (see withSections).
const baseYAML = `
appliance_id: line-3
data_dir: /tmp/eddy-test
sources:
  - name: readings
    topic: "sensors/+/+/telemetry"
    topic_fields: [null, site, device, null]
pipeline:
  parallelism: 2
  stages:
    - {name: valid, filter: "temperature > -50 && temperature < 150"}
    - {name: converted, map: {temp_f: "temperature * 1.8 + 32"}}
    - name: per_device_minute
      from: converted
      key_by: [site, device]
      window: {type: tumbling, size: 1m, allowed_lateness: 30s}
      aggregate: {count: "count()", avg_temp: "avg(temperature)", max_temp: "max(temperature)"}
sinks:
  - {name: results, from: per_device_minute, mqtt: {topic: "results/{site}/{device}"}}
  - {name: archive, from: per_device_minute, file: {path: results.jsonl}}
  - {name: dead, dead_letters: true, file: {path: dead-letters.jsonl}}
`

// topLevelBlocks splits YAML text into its top-level sections, keyed by
// the section's key, in order.
func topLevelBlocks(t *testing.T, y string) (keys []string, blocks map[string]string) {
	t.Helper()
	blocks = map[string]string{}
	cur := ""
	for _, line := range strings.Split(y, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if line[0] != ' ' && line[0] != '-' {
			k, _, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("bad top-level line %q", line)
			}
			cur = k
			keys = append(keys, k)
		}
		if cur == "" {
			t.Fatalf("indented line before any key: %q", line)
		}
		blocks[cur] += line + "\n"
	}
	return keys, blocks
}

// withSections returns baseYAML with each top-level section of snippet
// replacing the base's section of the same key (or appended).
func withSections(t *testing.T, snippet string) string {
	t.Helper()
	bk, bb := topLevelBlocks(t, baseYAML)
	sk, sb := topLevelBlocks(t, snippet)
	var out strings.Builder
	for _, k := range bk {
		if s, ok := sb[k]; ok {
			out.WriteString(s)
		} else {
			out.WriteString(bb[k])
		}
	}
	for _, k := range sk {
		if _, ok := bb[k]; !ok {
			out.WriteString(sb[k])
		}
	}
	return out.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadYAML(t *testing.T, content string) (*Config, error) {
	t.Helper()
	return Load(writeFile(t, content))
}

func mustLoad(t *testing.T, content string) *Config {
	t.Helper()
	c, err := loadYAML(t, content)
	if err != nil {
		t.Fatalf("Load: %v\n--- config:\n%s", err, content)
	}
	return c
}

func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %T: %v", err, err)
	}
	return ve.Problems
}

func findProblem(ps []Problem, key string) (Problem, bool) {
	for _, p := range ps {
		if p.Key == key {
			return p, true
		}
	}
	return Problem{}, false
}
