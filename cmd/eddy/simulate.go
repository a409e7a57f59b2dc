package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/simulate"
)

// liveEndMarkerDelay is the end marker's default distance from the last
// event time of a live stream: longer than a one-minute window plus its
// max_out_of_orderness.
const liveEndMarkerDelay = time.Minute + 10*time.Second

func simulateCmd() *cobra.Command {
	var (
		o        simulate.Options
		broker   string
		clientID string
		start    string
		qos      int
	)
	c := &cobra.Command{
		Use:   "simulate",
		Short: "Publish realistic, deterministic sensor readings to an MQTT broker",
		Long: `Publishes readings {"device","site","ts","temperature","humidity"} to
sensors/{site}/{device}/telemetry. The same --seed and --start give the same
stream byte for byte. With neither --duration nor --count it runs until stopped.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch start {
			case "now":
				o.Start = time.Now().Truncate(time.Second)
			case "":
			default:
				t, err := time.Parse(time.RFC3339, start)
				if err != nil {
					return fmt.Errorf("--start: %w", err)
				}
				o.Start = t
			}
			if start == "now" && o.EndMarker {
				// A live stream: the marker must not lead the clock, or a
				// running pipeline's real readings turn late.
				o.EndMarkerOnTime = true
				if o.EndMarkerDelay == 0 {
					o.EndMarkerDelay = liveEndMarkerDelay
				}
			}
			if o.Duration == 0 && o.Count == 0 {
				o.Count = math.MaxInt32 // until stopped
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			pub := mqttio.NewPublisher(mqttio.ClientOptions{Broker: broker, ClientID: clientID, CleanSession: true})
			if err := pub.Start(ctx); err != nil {
				return err
			}
			defer pub.Close()
			st, err := simulate.Run(ctx, o, func(ctx context.Context, topic string, payload []byte, _ byte, retain bool) error {
				return pub.Publish(ctx, topic, payload, byte(qos), retain)
			})
			if ferr := pub.Flush(context.Background()); ferr != nil && err == nil {
				err = ferr
			}
			fmt.Fprintln(cmd.OutOrStdout(), st)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	f.StringVar(&clientID, "client-id", "eddy-simulate", "MQTT client id")
	f.IntVar(&qos, "qos", 1, "QoS to publish with (0, 1, 2)")
	f.IntVar(&o.Devices, "devices", 10, "number of devices")
	f.IntVar(&o.Sites, "sites", 2, "number of sites the devices are spread over")
	f.Float64Var(&o.Rate, "rate", 100, "readings per second for the whole fleet (0 = as fast as possible)")
	f.IntVar(&o.Batch, "batch", 1, "readings per message (more than 1: a JSON array)")
	f.DurationVar(&o.Duration, "duration", 0, "how long to publish (event time span = duration)")
	f.IntVar(&o.Count, "count", 0, "number of readings (instead of --duration)")
	f.DurationVar(&o.Disorder, "disorder", 0, "jitter event times backwards by up to this much")
	f.Int64Var(&o.Seed, "seed", 1, "random seed: the same seed gives the same stream")
	f.StringVar(&start, "start", "now", `event time of the first reading: RFC 3339, "now", or "" for the fixed default`)
	f.DurationVar(&o.Interval, "interval", 0, "event-time step between readings (default 1s/rate)")
	f.BoolVar(&o.EndMarker, "end-marker", false, "finish with a reading --end-marker-delay after the last event time so every window closes; "+
		"with --start now it is published only once the clock reaches its event time (not needed with idle_advance)")
	f.DurationVar(&o.EndMarkerDelay, "end-marker-delay", 0, "how far after the last event time the end marker lies (default 1m10s with --start now, else 10m)")
	f.Float64Var(&o.Bad, "bad", 0, "fraction of messages replaced by malformed input")
	f.StringVar(&o.TopicPattern, "topic-pattern", "", "topic pattern (default sensors/{site}/{device}/telemetry)")
	return c
}
