package daemon

import (
	"context"
	"log/slog"
	"testing"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline/sink"
)

// Sinks on the default connection share its publisher, sinks with the
// same own connection share one, and a different connection gets its own.
func TestOnePublisherPerConnection(t *testing.T) {
	q := 1
	cloud := config.MQTT{Broker: "tcp://127.0.0.1:1", ClientID: "eddy-x-cloud", ConnectTimeout: 1e9, ReconnectMaxInterval: 1e9}
	other := cloud
	other.ClientID = "eddy-x-dead"
	cloud2 := cloud
	d := &Daemon{
		log: slog.New(slog.DiscardHandler), sinks: map[string]sink.Sink{},
		cfg: &config.Config{
			MQTT: config.MQTT{Broker: "tcp://127.0.0.1:1", ClientID: "eddy-x", ConnectTimeout: 1e9, ReconnectMaxInterval: 1e9},
			Sinks: []config.Sink{
				{Name: "live", MQTT: &config.MQTTSink{Topic: "a", QoS: &q}},
				{Name: "cloud", MQTT: &config.MQTTSink{Topic: "b", QoS: &q, Connection: &cloud}},
				{Name: "cloud-copy", MQTT: &config.MQTTSink{Topic: "c", QoS: &q, Connection: &cloud2}},
				{Name: "dead", DeadLetters: true, MQTT: &config.MQTTSink{Topic: "d", QoS: &q, Connection: &other}},
				{Name: "archive", File: &config.FileSink{Path: "x"}},
			},
		},
	}
	if err := d.startPublisher(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range d.publishers {
			p.Close()
		}
	}()
	if len(d.publishers) != 3 {
		t.Fatalf("%d publishers, want 3 (default, cloud, dead)", len(d.publishers))
	}
	for _, n := range []string{"live", "cloud", "cloud-copy", "dead"} {
		if d.sinks[n] == nil {
			t.Errorf("no sink %s", n)
		}
	}
	if d.sinks["archive"] != nil {
		t.Error("startPublisher made the file sink")
	}
}
