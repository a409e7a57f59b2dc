package config

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/viper"
)

// The packaged configuration and the demo configuration load and validate
// as they are shipped.
func TestShippedConfigsLoad(t *testing.T) {
	for _, p := range []string{"../../configs/config.yaml", "../../configs/demo.yaml"} {
		t.Run(p, func(t *testing.T) {
			c, err := Load(p)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate after Load: %v", err)
			}
		})
	}
}

func TestPackagedConfig(t *testing.T) {
	c, err := Load("../../configs/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/eddy" || c.MQTT.Broker != "tcp://127.0.0.1:1883" || c.HTTP.Listen != "127.0.0.1:8086" {
		t.Errorf("data_dir %q, broker %q, http %q", c.DataDir, c.MQTT.Broker, c.HTTP.Listen)
	}
	// Every key is present (and so documented in place).
	v := viper.New()
	v.SetConfigFile("../../configs/config.yaml")
	if err := v.ReadInConfig(); err != nil {
		t.Fatal(err)
	}
	for _, k := range append(Keys(), "state.column_families") {
		if !v.InConfig(k) {
			t.Errorf("configs/config.yaml lacks %s", k)
		}
	}
	// The packaged file states the defaults: apart from the pipeline, it
	// must not differ from Default().
	d := Default()
	d.ApplianceID, d.Sources, d.Pipeline.Stages, d.Sinks = c.ApplianceID, c.Sources, c.Pipeline.Stages, c.Sinks
	d.MQTT.ClientID = c.MQTT.ClientID
	if r, f := ReloadableDiff(d, c); len(r)+len(f) > 0 {
		t.Errorf("configs/config.yaml differs from Default() at %v %v", r, f)
	}
}

func TestDemoConfig(t *testing.T) {
	c, err := Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.MQTT.IsEmbedded() || c.DataDir != "./.tmp/demo" || c.HTTP.Listen != "127.0.0.1:8086" || c.Pipeline.Parallelism != 2 {
		t.Errorf("broker %q, data_dir %q, http %q, parallelism %d", c.MQTT.Broker, c.DataDir, c.HTTP.Listen, c.Pipeline.Parallelism)
	}
	if c.Log.Level != "info" {
		t.Errorf("log.level %q", c.Log.Level)
	}
	var file, mqtt bool
	for _, s := range c.Sinks {
		if s.DeadLetters {
			continue
		}
		if s.File != nil && c.Path(s.File.Path) == ".tmp/demo/results.jsonl" {
			file = true
		}
		if s.MQTT != nil {
			mqtt = true
		}
	}
	if !file || !mqtt {
		t.Errorf("want a file sink at ./.tmp/demo/results.jsonl and an MQTT sink (file %v, mqtt %v)", file, mqtt)
	}
	w := c.Pipeline.Stages[len(c.Pipeline.Stages)-1].Window
	if w == nil || w.Type != WindowTumbling || w.Size.Seconds() != 10 {
		t.Errorf("want a 10s tumbling window, got %+v", w)
	}
}

// docs/configuration.md names every key and its environment variable.
func TestReferenceDocCoversEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, k := range Keys() {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("docs/configuration.md lacks `%s`", k)
		}
		if !strings.Contains(doc, EnvVar(k)) {
			t.Errorf("docs/configuration.md lacks %s", EnvVar(k))
		}
	}
}
