package config

import (
	"slices"
	"testing"
	"time"
)

func TestRedacted(t *testing.T) {
	c := mustLoad(t, withSections(t, `
mqtt: {username: eddy, password: mqtt-secret}
upload: {remote: "s3://backups/eddy", access_key_id: AKIAEXAMPLE, secret_access_key: s3-secret}
http: {listen: "0.0.0.0:8086", token: http-secret}
`))
	r := c.Redacted()
	if r.MQTT.Password != "***" || r.Upload.SecretAccessKey != "***" || r.HTTP.Token != "***" {
		t.Errorf("not redacted: %q %q %q", r.MQTT.Password, r.Upload.SecretAccessKey, r.HTTP.Token)
	}
	if r.MQTT.Username != "eddy" || r.Upload.AccessKeyID != "AKIAEXAMPLE" {
		t.Errorf("non-secrets changed: %q %q", r.MQTT.Username, r.Upload.AccessKeyID)
	}
	if c.MQTT.Password != "mqtt-secret" || c.HTTP.Token != "http-secret" || c.Upload.SecretAccessKey != "s3-secret" {
		t.Errorf("original changed")
	}
	// A deep copy: changing the copy leaves the original alone.
	r.Sources[0].TopicFields[1] = "x"
	r.Pipeline.Stages[1].Map["temp_f"] = "0"
	r.Pipeline.Stages[2].Window.Size = time.Hour
	*r.Sources[0].QoS = 0
	if c.Sources[0].TopicFields[1] != "site" || c.Pipeline.Stages[1].Map["temp_f"] == "0" ||
		c.Pipeline.Stages[2].Window.Size != time.Minute || *c.Sources[0].QoS != 1 {
		t.Errorf("Redacted shares memory with the original")
	}
	// Unset secrets stay empty, so "***" always means "set".
	if e := mustLoad(t, baseYAML).Redacted(); e.MQTT.Password != "" || e.HTTP.Token != "" {
		t.Errorf("empty secrets redacted: %q %q", e.MQTT.Password, e.HTTP.Token)
	}
	m := r.AsMap()
	if m["http"].(map[string]any)["token"] != "***" || m["checkpointing"].(map[string]any)["timeout"] != "10m0s" ||
		m["state"].(map[string]any)["memory"].(map[string]any)["managed"] != "256MiB" {
		t.Errorf("AsMap: %v", m)
	}
}

func TestReloadableDiff(t *testing.T) {
	base := mustLoad(t, baseYAML)
	tests := []struct {
		name       string
		edit       func(c *Config)
		reloadable []string
		refused    []string
	}{
		{name: "no change", edit: func(*Config) {}},
		{name: "log level", edit: func(c *Config) { c.Log.Level = "debug" }, reloadable: []string{"log.level"}},
		{name: "every reloadable key", edit: func(c *Config) {
			c.Log.Level = "warn"
			c.Checkpointing.Interval = time.Minute
			c.Checkpointing.MinPause = 0
			c.Upload.Bandwidth = MiB
		}, reloadable: []string{"checkpointing.interval", "checkpointing.min_pause", "upload.bandwidth", "log.level"}},
		{name: "mixed", edit: func(c *Config) {
			c.Checkpointing.Interval = time.Minute
			c.HTTP.Listen = "127.0.0.1:9000"
			c.Log.Format = "text"
		}, reloadable: []string{"checkpointing.interval"}, refused: []string{"http.listen", "log.format"}},
		{name: "source topic", edit: func(c *Config) { c.Sources[0].Topic = "other/+/+/t" }, refused: []string{"sources[0].topic"}},
		{name: "topic fields", edit: func(c *Config) { c.Sources[0].TopicFields[1] = "plant" }, refused: []string{"sources[0].topic_fields"}},
		{name: "added sink", edit: func(c *Config) { c.Sinks = append(c.Sinks, Sink{Name: "more"}) }, refused: []string{"sinks"}},
		{name: "map expression", edit: func(c *Config) { c.Pipeline.Stages[1].Map["temp_f"] = "temperature" }, refused: []string{"pipeline.stages[1].map.temp_f"}},
		{name: "aggregate added", edit: func(c *Config) { c.Pipeline.Stages[2].Aggregate["min_temp"] = "min(temperature)" }, refused: []string{"pipeline.stages[2].aggregate.min_temp"}},
		{name: "window removed", edit: func(c *Config) { c.Pipeline.Stages[2].Window = nil }, refused: []string{"pipeline.stages[2].window"}},
		{name: "window size", edit: func(c *Config) { c.Pipeline.Stages[2].Window.Size = time.Hour }, refused: []string{"pipeline.stages[2].window.size"}},
		{name: "secret", edit: func(c *Config) { c.MQTT.Password = "new" }, refused: []string{"mqtt.password"}},
		{name: "column family", edit: func(c *Config) {
			c.State.ColumnFamilies = map[string]ColumnFamily{"windows": {Compression: "lz4"}}
		}, refused: []string{"state.column_families.windows"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next := base.Clone()
			tc.edit(next)
			r, f := ReloadableDiff(base, next)
			if !slices.Equal(r, tc.reloadable) || !slices.Equal(f, tc.refused) {
				t.Errorf("got reloadable %v refused %v; want %v %v", r, f, tc.reloadable, tc.refused)
			}
		})
	}
	if !slices.Equal(ReloadableKeys(), []string{"log.level", "checkpointing.interval", "checkpointing.min_pause", "upload.bandwidth"}) {
		t.Errorf("ReloadableKeys = %v", ReloadableKeys())
	}
}
