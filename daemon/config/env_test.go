package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEnvOverrides(t *testing.T) {
	// The base file has no http, state or checkpointing sections: the
	// variables must apply all the same.
	t.Setenv("EDDY_HTTP_LISTEN", "127.0.0.1:9999")
	t.Setenv("EDDY_DATA_DIR", "/srv/eddy")
	t.Setenv("EDDY_CHECKPOINTING_INTERVAL", "30s")
	t.Setenv("EDDY_CHECKPOINTING_INCREMENTAL", "false")
	t.Setenv("EDDY_STATE_MEMORY_MANAGED", "1GiB")
	t.Setenv("EDDY_STATE_MEMORY_WRITE_BUFFER_RATIO", "0.25")
	t.Setenv("EDDY_MQTT_BROKER", "embedded")
	t.Setenv("EDDY_MQTT_TLS_INSECURE_SKIP_VERIFY", "") // empty = unset
	t.Setenv("EDDY_UPLOAD_BANDWIDTH", "1048576")
	t.Setenv("EDDY_CHECKPOINTING_UNALIGNED", "true")
	t.Setenv("EDDY_CHECKPOINTING_ALIGNED_TIMEOUT", "3s")

	c := mustLoad(t, withSections(t, "pipeline:\n  parallelism: 2\n  stages:\n    - {name: v, filter: 'true'}\nsinks:\n  - {name: out, from: v, file: {path: out.jsonl}}"))
	checks := []struct {
		name      string
		got, want any
	}{
		{"http.listen", c.HTTP.Listen, "127.0.0.1:9999"},
		{"data_dir", c.DataDir, "/srv/eddy"},
		{"checkpointing.interval", c.Checkpointing.Interval, 30 * time.Second},
		{"checkpointing.incremental", c.Checkpointing.Incremental, false},
		{"state.memory.managed", c.State.Memory.Managed, GiB},
		{"state.memory.write_buffer_ratio", c.State.Memory.WriteBufferRatio, 0.25},
		{"mqtt.broker", c.MQTT.Broker, "embedded"},
		{"upload.bandwidth", c.Upload.Bandwidth, MiB},
		{"checkpointing.unaligned", c.Checkpointing.Unaligned, true},
		{"checkpointing.aligned_timeout", c.Checkpointing.AlignedTimeout, 3 * time.Second},
		{"pipeline.parallelism (file, untouched)", c.Pipeline.Parallelism, 2},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestEnvBeatsFile(t *testing.T) {
	t.Setenv("EDDY_LOG_LEVEL", "debug")
	t.Setenv("EDDY_PIPELINE_PARALLELISM", "4")
	c := mustLoad(t, withSections(t, "log: {level: warn}"))
	if c.Log.Level != "debug" || c.Pipeline.Parallelism != 4 {
		t.Fatalf("log.level = %q, pipeline.parallelism = %d", c.Log.Level, c.Pipeline.Parallelism)
	}
}

func TestEnvBadValues(t *testing.T) {
	tests := []struct {
		name, env, val, key, msg string
	}{
		{"bad duration", "EDDY_CHECKPOINTING_INTERVAL", "5 seconds", "checkpointing.interval", `from EDDY_CHECKPOINTING_INTERVAL="5 seconds": invalid duration`},
		{"bad int", "EDDY_PIPELINE_PARALLELISM", "two", "pipeline.parallelism", `from EDDY_PIPELINE_PARALLELISM="two": must be a whole number`},
		{"bad bool", "EDDY_CHECKPOINTING_INCREMENTAL", "nope", "checkpointing.incremental", "from EDDY_CHECKPOINTING_INCREMENTAL"},
		{"bad size", "EDDY_STATE_MEMORY_MANAGED", "lots", "state.memory.managed", `from EDDY_STATE_MEMORY_MANAGED="lots": invalid size`},
		{"bad float", "EDDY_STATE_MEMORY_HIGH_PRIO_POOL_RATIO", "a tenth", "state.memory.high_prio_pool_ratio", "must be a number"},
		{"parses but invalid", "EDDY_CHECKPOINTING_MODE", "exactly", "checkpointing.mode", "must be one of exactly_once, at_least_once"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.env, tc.val)
			_, err := loadYAML(t, baseYAML)
			ps := problemsOf(t, err)
			p, ok := findProblem(ps, tc.key)
			if !ok || !strings.Contains(p.Msg, tc.msg) {
				t.Fatalf("want %s: ...%s..., got:\n%v", tc.key, tc.msg, err)
			}
			if len(ps) != 1 {
				t.Errorf("want one problem, got:\n%v", err)
			}
		})
	}
}

func TestEnvWithoutFile(t *testing.T) {
	t.Setenv("EDDY_APPLIANCE_ID", "line-9")
	_, err := Load("")
	ps := problemsOf(t, err)
	if _, ok := findProblem(ps, "appliance_id"); ok {
		t.Errorf("appliance_id from the environment not applied:\n%v", err)
	}
	if _, ok := findProblem(ps, "sources"); !ok {
		t.Errorf("want sources required:\n%v", err)
	}
}

// TestEveryKeyHasAWorkingEnvVar sets each key's variable to a value of its
// type that differs from the default and checks it lands.
func TestEveryKeyHasAWorkingEnvVar(t *testing.T) {
	for _, key := range Keys() {
		t.Run(key, func(t *testing.T) {
			c := Default()
			f := fieldAt(t, c, key)
			var val string
			switch f.Type() {
			case durationType:
				val = "1h2m3s"
			case sizeType:
				val = "3MiB"
			default:
				switch f.Kind() {
				case reflect.String:
					val = "from-env"
				case reflect.Bool:
					val = map[bool]string{true: "false", false: "true"}[f.Bool()]
				case reflect.Int:
					val = "77"
				case reflect.Float64:
					val = "0.77"
				default:
					t.Fatalf("unexpected kind %s", f.Kind())
				}
			}
			before := f.Interface()
			t.Setenv(EnvVar(key), val)
			if ps := applyEnv(c); len(ps) != 0 {
				t.Fatalf("problems: %v", ps)
			}
			if reflect.DeepEqual(before, f.Interface()) {
				t.Fatalf("%s=%s did not change %s (still %v)", EnvVar(key), val, key, before)
			}
		})
	}
}

func fieldAt(t *testing.T, c *Config, key string) reflect.Value {
	t.Helper()
	v := reflect.ValueOf(c).Elem()
	for _, seg := range strings.Split(key, ".") {
		f, ok := fieldByTag(v.Type(), seg)
		if !ok {
			t.Fatalf("no field %s in %s", seg, key)
		}
		v = v.FieldByIndex(f.Index)
	}
	return v
}

func TestEnvVar(t *testing.T) {
	for key, want := range map[string]string{
		"http.listen":                   "EDDY_HTTP_LISTEN",
		"data_dir":                      "EDDY_DATA_DIR",
		"checkpointing.interval":        "EDDY_CHECKPOINTING_INTERVAL",
		"state.memory.managed":          "EDDY_STATE_MEMORY_MANAGED",
		"mqtt.broker":                   "EDDY_MQTT_BROKER",
		"mqtt.tls.insecure_skip_verify": "EDDY_MQTT_TLS_INSECURE_SKIP_VERIFY",
	} {
		if got := EnvVar(key); got != want {
			t.Errorf("EnvVar(%q) = %q, want %q", key, got, want)
		}
	}
}
