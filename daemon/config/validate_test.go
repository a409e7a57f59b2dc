package config

import (
	"strings"
	"testing"
	"time"
)

func TestBaseConfigIsValid(t *testing.T) {
	c := mustLoad(t, baseYAML)
	if got := c.Sinks[1].File.MaxSize; got != 64*MiB {
		t.Errorf("file sink max_size default: got %s, want 64MiB", got)
	}
	if got := c.Sources[0].EventTime.Format; got != "auto" {
		t.Errorf("event_time.format default: got %q", got)
	}
	if et := c.Sources[0].EventTime; !et.IdleAdvance || et.MaxFuture != time.Hour {
		t.Errorf("event_time defaults: idle_advance %v, max_future %v; want true, 1h", et.IdleAdvance, et.MaxFuture)
	}
	if c.MQTT.ClientID != "eddy-line-3" {
		t.Errorf("client_id: got %q", c.MQTT.ClientID)
	}
	if *c.Sources[0].QoS != 1 || *c.Sinks[0].MQTT.QoS != 1 {
		t.Errorf("qos not derived from mqtt.qos")
	}
}

// TestBrokenConfigs loads configurations with one thing wrong each and
// checks that exactly that key is reported.
func TestBrokenConfigs(t *testing.T) {
	tests := []struct {
		name string
		yaml string // top-level sections replacing the base's
		key  string // the key the problem must name
		msg  string // a fragment of the message
		more bool   // other problems may be reported as well
	}{
		// Unknown keys.
		{name: "unknown top-level key", yaml: `colour: blue`, key: "colour", msg: "unknown key"},
		{name: "unknown nested key suggests", yaml: `checkpointing: {intervall: 5s}`, key: "checkpointing.intervall", msg: "did you mean interval?"},
		{name: "unknown key two levels down", yaml: "mqtt:\n  tls: {ca: /etc/ca.pem}", key: "mqtt.tls.ca", msg: "allowed: ca_file, cert_file, key_file, insecure_skip_verify"},
		{name: "unknown key in list element", yaml: "sources:\n  - {name: readings, topik: a/b}", key: "sources[0].topik", msg: "did you mean topic?", more: true},
		{name: "unknown key in sink file", yaml: "sinks:\n  - {name: results, from: valid, file: {path: x.jsonl, rotate: 5}}", key: "sinks[0].file.rotate", msg: "unknown key"},
		{name: "unknown key in column family", yaml: "state:\n  column_families: {windows: {block_size: 4KiB}}", key: "state.column_families.windows.block_size", msg: "unknown key"},

		// Wrong types.
		{name: "string for number", yaml: `mqtt: {qos: "1"}`, key: "mqtt.qos", msg: `must be a whole number, got string "1"`},
		{name: "number for string", yaml: `appliance_id: 123`, key: "appliance_id", msg: "must be a string, got number 123"},
		{name: "string for bool", yaml: `checkpointing: {incremental: "yes"}`, key: "checkpointing.incremental", msg: "must be true or false"},
		{name: "fraction for whole number", yaml: `checkpointing: {max_concurrent: 1.5}`, key: "checkpointing.max_concurrent", msg: "must be a whole number"},
		{name: "list for mapping", yaml: `http: [a, b]`, key: "http", msg: "must be a mapping"},
		{name: "mapping for list", yaml: `sources: {name: readings}`, key: "sources", msg: "must be a list"},
		{name: "number for duration", yaml: `checkpointing: {interval: 5}`, key: "checkpointing.interval", msg: "must be a duration with a unit"},
		{name: "bad duration", yaml: `checkpointing: {timeout: 10 minutes}`, key: "checkpointing.timeout", msg: `invalid duration "10 minutes"`},
		{name: "bad size", yaml: `state: {memory: {managed: 256 megs}}`, key: "state.memory.managed", msg: `invalid size "256 megs"`},
		{name: "fractional byte count", yaml: `ingest_log: {segment_size: 1.5}`, key: "ingest_log.segment_size", msg: "whole number of bytes"},

		// Ranges and enums.
		{name: "bad disk.min_free", yaml: `disk: {min_free: lots}`, key: "disk.min_free", msg: `invalid size "lots"`},
		{name: "bad disk.reserve", yaml: `disk: {reserve: plenty}`, key: "disk.reserve", msg: `invalid size "plenty"`},
		{name: "disk.reserve percent", yaml: `disk: {reserve: 5%}`, key: "disk.reserve", msg: "auto, or 0 for no reserve"},
		{name: "disk.min_free 100%", yaml: `disk: {min_free: 100%}`, key: "disk.min_free", msg: "from 0 to below 100"},
		{name: "sink spool too small", yaml: "sinks:\n  - {name: results, from: valid, file: {path: x.jsonl}, spool: {max_size: 1KiB}}", key: "sinks[0].spool.max_size", msg: "must be between 16KiB and 1TiB (got 1KiB)"},
		{name: "unknown key in sink spool", yaml: "sinks:\n  - {name: results, from: valid, file: {path: x.jsonl}, spool: {size: 1MiB}}", key: "sinks[0].spool.size", msg: "unknown key"},
		{name: "qos out of range", yaml: `mqtt: {qos: 3}`, key: "mqtt.qos", msg: "must be between 0 and 2 (got 3)"},
		{name: "max_parallelism out of range", yaml: "pipeline:\n  max_parallelism: 40000\n  stages: [{name: valid, filter: 'true'}]\nsinks:\n  - {name: out, from: valid, file: {path: out.jsonl}}", key: "pipeline.max_parallelism", msg: "must be between 1 and 32768"},
		{name: "parallelism above max_parallelism", yaml: "pipeline:\n  parallelism: 256\n  max_parallelism: 128\n  stages: [{name: valid, filter: 'true'}]\nsinks:\n  - {name: out, from: valid, file: {path: out.jsonl}}", key: "pipeline.parallelism", msg: "must be <= pipeline.max_parallelism (128) (got 256)"},
		{name: "bad checkpointing mode", yaml: `checkpointing: {mode: exactly}`, key: "checkpointing.mode", msg: `must be one of exactly_once, at_least_once (got "exactly")`},
		{name: "bad log level", yaml: `log: {level: verbose}`, key: "log.level", msg: "must be one of debug, info, warn, error"},
		{name: "managed memory too small", yaml: `state: {memory: {managed: 1MiB}}`, key: "state.memory.managed", msg: "must be >= 16MiB (got 1MiB)"},
		{name: "ratio not below 1", yaml: `state: {memory: {write_buffer_ratio: 1}}`, key: "state.memory.write_buffer_ratio", msg: "between 0 and 1"},
		{name: "no block cache left", yaml: `state: {memory: {write_buffer_ratio: 0.5, write_cache_ratio: 0.5}}`, key: "state.memory.write_cache_ratio", msg: "plus write_buffer_ratio must be below 1"},
		{name: "interval below 10ms", yaml: `checkpointing: {interval: 5ms}`, key: "checkpointing.interval", msg: "must be 0 (off) or >= 10ms"},
		{name: "negative min_pause", yaml: `checkpointing: {min_pause: -1s}`, key: "checkpointing.min_pause", msg: "must be >= 0 (got -1s)"},
		{name: "unaligned at least once", yaml: `checkpointing: {mode: at_least_once, unaligned: true}`, key: "checkpointing.unaligned", msg: "must be false with checkpointing.mode: at_least_once"},
		{name: "negative aligned_timeout", yaml: `checkpointing: {unaligned: true, aligned_timeout: -1s}`, key: "checkpointing.aligned_timeout", msg: "must be >= 0 (got -1s)"},
		{name: "aligned_timeout without unaligned", yaml: `checkpointing: {aligned_timeout: 5s}`, key: "checkpointing.aligned_timeout", msg: "must be 0 unless checkpointing.unaligned is true (got 5s)"},
		{name: "bad column family compression", yaml: "state:\n  column_families: {windows: {compression: gzip}}", key: "state.column_families.windows.compression", msg: "none, snappy, lz4, zstd"},
		{name: "bad appliance id", yaml: `appliance_id: Line_3`, key: "appliance_id", msg: "must match"},
		{name: "missing appliance id", yaml: `appliance_id: ""`, key: "appliance_id", msg: "required"},

		// References.
		{name: "dangling sink from", yaml: "sinks:\n  - {name: results, from: nope, file: {path: x.jsonl}}", key: "sinks[0].from", msg: `stage "nope" does not exist (stages: valid, converted, per_device_minute)`},
		{name: "sink reads a source", yaml: "sinks:\n  - {name: raw, from: readings, file: {path: raw.jsonl}}", key: "sinks[0].from", msg: `"readings" is a source; a sink reads a stage`},
		{name: "dangling stage from", yaml: "pipeline:\n  stages:\n    - {name: valid, from: sensors, filter: 'true'}\nsinks:\n  - {name: out, from: valid, file: {path: out.jsonl}}", key: "pipeline.stages[0].from", msg: `"sensors" is not a source or an earlier stage (sources: readings; earlier stages: none)`},
		{name: "stage reads a later stage", yaml: "pipeline:\n  stages:\n    - {name: a, from: b, filter: 'true'}\n    - {name: b, filter: 'true'}\nsinks:\n  - {name: out, from: b, file: {path: out.jsonl}}", key: "pipeline.stages[0].from", msg: "not earlier than this one"},
		{name: "dangling placeholder", yaml: "sinks:\n  - {name: results, from: per_device_minute, mqtt: {topic: 'results/{room}'}}", key: "sinks[0].mqtt.topic", msg: "placeholder {room} is not a key field"},
		{name: "placeholder on a filter stage", yaml: "sinks:\n  - {name: results, from: valid, mqtt: {topic: 'results/{site}'}}", key: "sinks[0].mqtt.topic", msg: `stage "valid" is a filter stage`},
		{name: "unbalanced template", yaml: "sinks:\n  - {name: results, from: per_device_minute, mqtt: {topic: 'results/{site'}}", key: "sinks[0].mqtt.topic", msg: "{ without a }"},
		{name: "wildcard in sink topic", yaml: "sinks:\n  - {name: results, from: per_device_minute, mqtt: {topic: 'results/#'}}", key: "sinks[0].mqtt.topic", msg: "wildcards"},

		// Duplicates.
		{name: "duplicate source names", yaml: "sources:\n  - {name: readings, topic: a/+}\n  - {name: readings, topic: b/+}", key: "sources[1].name", msg: `duplicate name "readings" (also sources[0])`},
		{name: "duplicate stage names", yaml: "pipeline:\n  stages:\n    - {name: valid, filter: 'true'}\n    - {name: valid, filter: 'false'}\nsinks:\n  - {name: out, from: valid, file: {path: out.jsonl}}", key: "pipeline.stages[1].name", msg: "duplicate name"},
		{name: "uid on a filter stage", yaml: "pipeline:\n  stages:\n    - {name: valid, uid: v, filter: 'true'}\nsinks:\n  - {name: out, from: valid, file: {path: out.jsonl}}", key: "pipeline.stages[0].uid", msg: "only a keyed window stage"},
		{name: "bad uid", yaml: "pipeline:\n  stages:\n    - {name: w, uid: Bad-Uid, key_by: [a], window: {type: tumbling, size: 1m}, aggregate: {n: 'count()'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].uid", msg: "must match [a-z][a-z0-9_]*"},
		{name: "uid taken by another stage's name", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: [a], window: {type: tumbling, size: 1m}, aggregate: {n: 'count()'}}\n    - {name: w2, uid: w, key_by: [a], window: {type: tumbling, size: 1m}, aggregate: {n: 'count()'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[1].uid", msg: `uid "w" is also the uid of pipeline.stages[0]`},
		{name: "duplicate sink names", yaml: "sinks:\n  - {name: out, from: valid, file: {path: a.jsonl}}\n  - {name: out, from: valid, file: {path: b.jsonl}}", key: "sinks[1].name", msg: "duplicate name"},
		{name: "stage named like a source", yaml: "pipeline:\n  stages:\n    - {name: readings, filter: 'true'}\nsinks:\n  - {name: out, from: readings, file: {path: out.jsonl}}", key: "pipeline.stages[0].name", msg: "already a source name"},
		{name: "two dead-letter sinks", yaml: "sinks:\n  - {name: out, from: valid, file: {path: out.jsonl}}\n  - {name: d1, dead_letters: true, file: {path: d1.jsonl}}\n  - {name: d2, dead_letters: true, mqtt: {topic: eddy/dead}}", key: "sinks[2].dead_letters", msg: "only one dead-letter sink"},
		{name: "two sinks write one file", yaml: "sinks:\n  - {name: a, from: valid, file: {path: out.jsonl}}\n  - {name: b, from: valid, file: {path: /tmp/eddy-test/out.jsonl}}", key: "sinks[1].file.path", msg: "writes the same file"},

		// Expressions and aggregates.
		{name: "bad filter syntax", yaml: "pipeline:\n  stages:\n    - {name: valid, filter: 'temperature >'}\nsinks:\n  - {name: out, from: valid, file: {path: out.jsonl}}", key: "pipeline.stages[0].filter", msg: "invalid expression"},
		{name: "filter is not boolean", yaml: "pipeline:\n  stages:\n    - {name: valid, filter: '1 + 2'}\nsinks:\n  - {name: out, from: valid, file: {path: out.jsonl}}", key: "pipeline.stages[0].filter", msg: "expected bool"},
		{name: "bad map expression", yaml: "pipeline:\n  stages:\n    - {name: conv, map: {temp_f: 'temperature * * 2'}}\nsinks:\n  - {name: out, from: conv, file: {path: out.jsonl}}", key: "pipeline.stages[0].map.temp_f", msg: "invalid expression"},
		{name: "unknown aggregate function", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: device, window: {type: tumbling, size: 1m}, aggregate: {med: 'median(temperature)'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].aggregate.med", msg: `unknown function "median"`},
		{name: "count with a field", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: device, window: {type: tumbling, size: 1m}, aggregate: {n: 'count(x)'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].aggregate.n", msg: "count() takes no field"},
		{name: "aggregate name clashes with key", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: device, window: {type: tumbling, size: 1m}, aggregate: {device: 'count()'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].aggregate.device", msg: "clashes with a key_by field"},
		{name: "aggregate name reserved", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: device, window: {type: tumbling, size: 1m}, aggregate: {window_end: 'max(ts)'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].aggregate.window_end", msg: "reserved"},

		// Windows and stage shape.
		{name: "sliding slide not below size", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: device, window: {type: sliding, size: 1m, slide: 1m}, aggregate: {n: 'count()'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].window.slide", msg: "must be < window.size (1m0s) (got 1m0s)"},
		{name: "sliding slide does not divide size", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: device, window: {type: sliding, size: 1m, slide: 25s}, aggregate: {n: 'count()'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].window.slide", msg: "must divide window.size"},
		{name: "tumbling without size", yaml: "pipeline:\n  stages:\n    - {name: v, filter: 'true'}\n    - {name: v2, filter: 'true'}\n    - {name: w, key_by: device, window: {type: tumbling}, aggregate: {n: 'count()'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[2].window.size", msg: "must be > 0 (got 0s)"},
		{name: "gap on a tumbling window", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: device, window: {type: tumbling, size: 1m, gap: 5s}, aggregate: {n: 'count()'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].window.gap", msg: "only applies to session windows"},
		{name: "bad window type", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: device, window: {type: hopping, size: 1m}, aggregate: {n: 'count()'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].window.type", msg: "must be one of tumbling, sliding, session"},
		{name: "keyed stage without window", yaml: "pipeline:\n  stages:\n    - {name: w, key_by: device, aggregate: {n: 'count()'}}\nsinks:\n  - {name: out, from: w, file: {path: out.jsonl}}", key: "pipeline.stages[0].window", msg: "required for a keyed window stage"},
		{name: "stage with filter and map", yaml: "pipeline:\n  stages:\n    - {name: v, filter: 'true', map: {x: '1'}}\nsinks:\n  - {name: out, from: v, file: {path: out.jsonl}}", key: "pipeline.stages[0]", msg: "exactly one of filter, map"},
		{name: "stage that does nothing", yaml: "pipeline:\n  stages:\n    - {name: v}\nsinks:\n  - {name: out, from: v, file: {path: out.jsonl}}", key: "pipeline.stages[0]", msg: "needs one of filter, map"},

		// Sources.
		{name: "bad topic filter", yaml: "sources:\n  - {name: readings, topic: 'sensors/a+/x'}", key: "sources[0].topic", msg: "+ must be a whole level"},
		{name: "hash not last", yaml: "sources:\n  - {name: readings, topic: 'sensors/#/x'}", key: "sources[0].topic", msg: "# must be the whole last level"},
		{name: "topic_fields length mismatch", yaml: "sources:\n  - {name: readings, topic: 'sensors/+/+/telemetry', topic_fields: [null, site, device]}", key: "sources[0].topic_fields", msg: "has 3 entries but topic"},
		{name: "bad event time format", yaml: "sources:\n  - {name: readings, topic: 'a/+', event_time: {format: unix}}", key: "sources[0].event_time.format", msg: "auto, rfc3339, epoch_ms, epoch_s"},
		{name: "negative max_future", yaml: "sources:\n  - {name: readings, topic: 'a/+', event_time: {max_future: -1m}}", key: "sources[0].event_time.max_future", msg: ">= 0"},
		{name: "idle_advance not a bool", yaml: "sources:\n  - {name: readings, topic: 'a/+', event_time: {idle_advance: sometimes}}", key: "sources[0].event_time.idle_advance", msg: ""},
		{name: "no sources", yaml: "sources: []", key: "sources", msg: "at least one source"},

		// Sinks.
		{name: "sink with mqtt and file", yaml: "sinks:\n  - {name: out, from: valid, mqtt: {topic: a}, file: {path: a.jsonl}}", key: "sinks[0]", msg: "has both mqtt and file"},
		{name: "sink with no output", yaml: "sinks:\n  - {name: out, from: valid}", key: "sinks[0]", msg: "needs one of mqtt"},
		{name: "sink without from", yaml: "sinks:\n  - {name: out, file: {path: a.jsonl}}", key: "sinks[0].from", msg: "required"},
		{name: "dead-letter topic with placeholder", yaml: "sinks:\n  - {name: out, from: valid, file: {path: a.jsonl}}\n  - {name: dead, dead_letters: true, mqtt: {topic: 'dead/{stage}'}}", key: "sinks[1].mqtt.topic", msg: "takes no placeholders"},

		// Connections and security.
		{name: "cert without key", yaml: "mqtt:\n  broker: ssl://broker.example:8883\n  tls: {cert_file: /etc/eddy/client.pem}", key: "mqtt.tls.key_file", msg: "required when mqtt.tls.cert_file is set"},
		{name: "tls with a tcp broker", yaml: "mqtt:\n  broker: tcp://broker.example:1883\n  tls: {ca_file: /etc/eddy/ca.pem}", key: "mqtt.tls", msg: "has no effect with a tcp:// broker"},
		{name: "bad broker scheme", yaml: `mqtt: {broker: "http://broker:1883"}`, key: "mqtt.broker", msg: "must be a tcp://"},
		{name: "broker without port", yaml: `mqtt: {broker: "tcp://broker.example"}`, key: "mqtt.broker", msg: "needs a port, e.g. tcp://broker.example:1883"},
		{name: "password and password file", yaml: `mqtt: {password: s3cret, password_file: /etc/eddy/mqtt-pass}`, key: "mqtt.password_file", msg: "not both"},
		{name: "non-loopback http without token", yaml: `http: {listen: "0.0.0.0:8086"}`, key: "http.listen", msg: "set http.token or http.token_file"},
		{name: "bad http listen", yaml: `http: {listen: "8086"}`, key: "http.listen", msg: "must be host:port"},
		{name: "bad upload remote", yaml: `upload: {remote: "ftp://backup/eddy"}`, key: "upload.remote", msg: "s3://bucket/prefix or file:///absolute/path"},
		{name: "relative file remote", yaml: `upload: {remote: "file://backup/eddy"}`, key: "upload.remote", msg: "absolute path"},
		{name: "access key without secret", yaml: `upload: {remote: "s3://bucket/eddy", access_key_id: AKIA123}`, key: "upload.secret_access_key", msg: "required when upload.access_key_id is set"},
	}
	if len(tests) < 25 {
		t.Fatalf("only %d cases", len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := withSections(t, tc.yaml)
			_, err := loadYAML(t, y)
			if err == nil {
				t.Fatalf("Load succeeded; want a problem at %s\n--- config:\n%s", tc.key, y)
			}
			ps := problemsOf(t, err)
			p, ok := findProblem(ps, tc.key)
			if !ok {
				t.Fatalf("no problem at %s; got:\n%v\n--- config:\n%s", tc.key, err, y)
			}
			if !strings.Contains(p.Msg, tc.msg) {
				t.Errorf("problem at %s: %q does not contain %q", tc.key, p.Msg, tc.msg)
			}
			if len(ps) != 1 && !tc.more {
				t.Errorf("want only the problem at %s, got %d:\n%v", tc.key, len(ps), err)
			}
		})
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	y := withSections(t, `
checkpointing: {mode: exactly, interval: soon}
http: {listen: "0.0.0.0:8086"}
`)
	_, err := loadYAML(t, y)
	ps := problemsOf(t, err)
	want := []string{"checkpointing.mode", "checkpointing.interval", "http.listen"}
	for _, k := range want {
		if _, ok := findProblem(ps, k); !ok {
			t.Errorf("no problem at %s", k)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("want %d problems, got %d:\n%v", len(want), len(ps), err)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("Error() should list one problem per line, got:\n%s", err)
	}
	if !strings.Contains(err.Error(), `checkpointing.mode: must be one of exactly_once, at_least_once (got "exactly")`) {
		t.Errorf("Error() = %s", err)
	}
}

func TestDecodeProblemSuppressesDerivedNoise(t *testing.T) {
	// sources fails to decode; "at least one source is required" would only
	// repeat it.
	_, err := loadYAML(t, withSections(t, `sources: "readings"`))
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Key != "sources" {
		t.Fatalf("got %v", err)
	}
}

func TestKeyByAcceptsString(t *testing.T) {
	c := mustLoad(t, withSections(t, `
pipeline:
  stages:
    - {name: w, key_by: device, window: {type: session, gap: 30s}, aggregate: {n: "count()"}}
sinks:
  - {name: out, from: w, mqtt: {topic: "out/{device}/{n}/{window_end}"}}
`))
	if got := c.Pipeline.Stages[0].KeyBy; len(got) != 1 || got[0] != "device" {
		t.Fatalf("key_by = %v", got)
	}
	if k := c.Pipeline.Stages[0].Kind(); k != KindWindow {
		t.Fatalf("kind = %q", k)
	}
}

func TestNamesAreCaseInsensitive(t *testing.T) {
	c := mustLoad(t, withSections(t, `
HTTP: {Listen: "127.0.0.1:9000"}
`))
	if c.HTTP.Listen != "127.0.0.1:9000" {
		t.Fatalf("listen = %q", c.HTTP.Listen)
	}
}

func TestReadErrors(t *testing.T) {
	if _, err := Load("/nonexistent/eddy.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/eddy.yaml") {
		t.Errorf("missing file: %v", err)
	}
	_, err := loadYAML(t, "appliance_id: [unclosed\n")
	if err == nil || !strings.HasPrefix(err.Error(), "config: read ") {
		t.Errorf("bad YAML: %v", err)
	}
}

func TestValidateDefaultNamesWhatIsMissing(t *testing.T) {
	err := Default().Validate()
	ps := problemsOf(t, err)
	for _, k := range []string{"appliance_id", "sources", "pipeline.stages", "sinks"} {
		if _, ok := findProblem(ps, k); !ok {
			t.Errorf("no problem at %s in:\n%v", k, err)
		}
	}
}

const cloudSinks = `sinks:
  - {name: archive, from: per_device_minute, file: {path: results.jsonl}}
  - {name: dead, dead_letters: true, file: {path: dead-letters.jsonl}}
  - name: cloud
    from: per_device_minute
    mqtt:
      topic: cloud/{site}/{device}
      connection: `

func TestSinkConnection(t *testing.T) {
	t.Run("own broker", func(t *testing.T) {
		c := mustLoad(t, withSections(t, cloudSinks+`
        broker: ssl://cloud.example:8883
        username: eddy
        tls: {ca_file: /etc/ca.pem, cert_file: /etc/c.pem, key_file: /etc/k.pem}
`))
		conn := c.Sinks[2].MQTT.Connection
		if conn == nil || conn.Broker != "ssl://cloud.example:8883" || conn.ClientID != "eddy-line-3-cloud" ||
			conn.KeepAlive != 30*time.Second || conn.TLS.CertFile != "/etc/c.pem" || c.Sinks[2].MQTT.Topic != "cloud/{site}/{device}" {
			t.Fatalf("connection %+v", conn)
		}
	})
	for _, tc := range []struct{ yaml, key string }{
		{"{broker: embedded}", "sinks[2].mqtt.connection.broker"},
		{"{broker: 'tcp://cloud'}", "sinks[2].mqtt.connection.broker"},
		{"{broker: 'ssl://c:8883', tls: {cert_file: /c.pem}}", "sinks[2].mqtt.connection.tls.key_file"},
		{"{broker: 'tcp://c:1883', tls: {ca_file: /c.pem}}", "sinks[2].mqtt.connection.tls"},
		{"{broker: 'tcp://c:1883', password: x, password_file: /p}", "sinks[2].mqtt.connection.password_file"},
		{"{broker: 'tcp://c:1883', tls: {ca: /c.pem}}", "sinks[2].mqtt.connection.tls.ca"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			_, err := loadYAML(t, withSections(t, cloudSinks+tc.yaml+"\n"))
			if err == nil {
				t.Fatal("loaded")
			}
			if _, ok := findProblem(problemsOf(t, err), tc.key); !ok {
				t.Fatalf("err %v, want a problem at %s", err, tc.key)
			}
		})
	}
}
