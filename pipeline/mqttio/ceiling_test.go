package mqttio

import (
	"bytes"
	"testing"
	"time"
)

// smallPayload is about the size of one simulated sensor reading.
var smallPayload = bytes.Repeat([]byte("r"), 100)

func TestMeasureCeiling(t *testing.T) {
	const n = 20_000
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			url := b.start(t)
			for _, qos := range []byte{0, 1} {
				rate, err := MeasureCeiling(ctxT(t, time.Minute), url, n, smallPayload, qos)
				if err != nil {
					t.Fatal(err)
				}
				if rate <= 0 {
					t.Fatalf("rate %v", rate)
				}
				t.Logf("%s: %d messages of %d bytes at qos %d: %.0f msgs/s", b.name, n, len(smallPayload), qos, rate)
			}
		})
	}
}

// BenchmarkBrokerCeiling is the ceiling eddy's own throughput is compared
// with: b.N (at least 1000) small QoS 1 messages from one publisher to one
// subscriber through mosquitto, and through the embedded broker.
func BenchmarkBrokerCeiling(b *testing.B) {
	for _, bk := range brokers {
		b.Run(bk.name, func(b *testing.B) {
			url := bk.start(b)
			ctx := ctxT(b, 10*time.Minute)
			b.SetBytes(int64(len(smallPayload)))
			b.ResetTimer()
			rate, err := MeasureCeiling(ctx, url, max(b.N, 1000), smallPayload, 1)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(rate, "msgs/s")
		})
	}
}
