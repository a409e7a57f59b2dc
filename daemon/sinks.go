package daemon

import (
	"fmt"

	"github.com/eddy-stream/eddy/daemon/config"
	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/pipeline/sink"
)

// openFileSink opens the file sink s (at start, and for a sink a pipeline
// reload adds or changes).
func (d *Daemon) openFileSink(s config.Sink) (sink.Sink, error) {
	fs, err := sink.NewFile(d.cfg.Path(s.File.Path), int64(s.File.MaxSize), s.File.MaxFiles, sink.WithFS(d.fs))
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", s.Name, err)
	}
	return withTestSinkCost(fs), nil
}

// openMQTTSink creates the MQTT sink s, configured as sinks[i], on the
// publisher of its connection: the default one (mqtt:) or its own
// sinks[].mqtt.connection; a connection no sink used yet gets a new
// publisher, started on the publishers' context.
func (d *Daemon) openMQTTSink(i int, s config.Sink) (sink.Sink, error) {
	var (
		o   mqttio.ClientOptions
		err error
		key string // "" is the default connection
	)
	if c := s.MQTT.Connection; c != nil {
		key = fmt.Sprintf("%#v", *c)
		o, err = connOptions(*c, "-pub", fmt.Sprintf("sinks[%d].mqtt.connection", i), d.log)
	} else {
		o, err = d.clientOptions("-pub")
	}
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", s.Name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pubByConn == nil {
		d.pubByConn = map[string]*mqttio.Publisher{}
	}
	pub := d.pubByConn[key]
	if pub == nil {
		// No paho file store: staged output stays in the checkpoints
		// until the broker confirms it (a file per message costs more
		// than the whole pipeline).
		pub = mqttio.NewPublisher(o)
		if err := pub.Start(d.pubCtx); err != nil {
			return nil, fmt.Errorf("sink %s: %w", s.Name, err)
		}
		d.pubByConn[key] = pub
		d.publishers = append(d.publishers, pub)
	}
	return sink.NewMQTT(pub, byte(*s.MQTT.QoS), s.MQTT.Retain), nil
}
