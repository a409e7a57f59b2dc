// Package simulate generates a deterministic stream of sensor readings
// from a fleet of devices and publishes it over MQTT. It backs
// `eddy simulate` and the end-to-end tests, which compute exact expected
// results from the readings the generator reports.
//
// # Determinism
//
// The stream is a pure function of Options: the same options (seed
// included) give a byte-identical sequence of topics and payloads, on any
// machine and Go version. Event times come from Start and Interval, never
// from the wall clock; Run only paces when messages go out. Randomness
// comes from PCG generators (math/rand/v2's PCG, whose output is
// specified) read through this package's own conversions, with separate
// streams for each device's values, for the disorder jitter and for bad
// input, so that turning on Bad or Disorder does not change the values.
//
// # Shape
//
// Reading i (from 0) of the fleet belongs to device i mod Devices
// (devices dev-0001, dev-0002, ...; device k is at site ((k-1) mod Sites)+1)
// and has event time Start + i*Interval, minus a jitter drawn uniformly
// from [0, Disorder] in whole milliseconds. Temperature and humidity follow
// a bounded random walk per device, rounded to 2 decimals. With Batch 1
// every reading is one message holding one JSON object; with Batch B > 1 a
// device sends a JSON array once it has B readings buffered, and at the
// end every device sends what it still holds (in device order).
package simulate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// DefaultTopicPattern is the topic of a device's messages; {site} and
// {device} are replaced.
const DefaultTopicPattern = "sensors/{site}/{device}/telemetry"

// EndDevice is the device of the end marker reading.
const EndDevice = "_end"

// EndMarkerDelay is how far after the last reading's event time the end
// marker lies when Options.EndMarkerDelay is zero: far enough that every
// event-time window of a test pipeline closes.
const EndMarkerDelay = 10 * time.Minute

// DefaultStart is the event time of the first reading when Options.Start
// is zero. `eddy simulate` passes the current time instead.
var DefaultStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Value ranges of the random walks.
const (
	TemperatureMin, TemperatureMax = 15.0, 35.0
	HumidityMin, HumidityMax       = 30.0, 70.0
)

// HugeSize is the size of the BadHuge payload: 2 MiB.
const HugeSize = 2 << 20

// Options describe the fleet and the stream. Set exactly one of Count and
// Duration.
type Options struct {
	Devices int // number of devices, at least 1
	Sites   int // devices are spread round-robin over site-1..site-Sites; 0 means 1
	// Rate is readings per second for the whole fleet when published by
	// Run; 0 publishes as fast as possible. It does not change the stream
	// except through Interval's default.
	Rate float64
	// Batch is readings per message: 1 (or 0) is one JSON object per
	// message, more is a JSON array of one device's readings.
	Batch int
	// Count is the number of readings (the end marker not included).
	Count int
	// Duration gives the count as Duration×Rate, or Duration/Interval when
	// Rate is 0.
	Duration time.Duration
	// Disorder jitters each event time backwards by up to this much.
	Disorder time.Duration
	// Start is the event time of reading 0; zero means DefaultStart.
	Start time.Time
	// Interval is the event-time step between consecutive readings of the
	// fleet; zero means 1s/Rate, or 10ms when Rate is 0.
	Interval time.Duration
	Seed     int64
	// TopicPattern defaults to DefaultTopicPattern.
	TopicPattern string
	// EndMarker adds one last reading from device EndDevice at site-1 with
	// event time EndMarkerDelay (the option, else the constant) after the
	// latest event time of the stream.
	EndMarker      bool
	EndMarkerDelay time.Duration
	// EndMarkerOnTime makes Run publish the end marker only once the wall
	// clock has reached its event time. For a live stream (Start = now): a
	// marker ahead of the clock would push the watermark of a running
	// pipeline ahead of real readings, which then turn late until the
	// clock catches up.
	EndMarkerOnTime bool
	// Bad is the fraction of messages replaced by one drawn from BadKinds.
	// All but BadExtraFields carry no good reading.
	Bad float64
}

// Reading is one sensor reading. TS is the event time in Unix milliseconds.
type Reading struct {
	Device      string
	Site        string
	TS          int64
	Temperature float64
	Humidity    float64
}

// BadKind names a kind of malformed message.
type BadKind string

// The kinds of bad input, in the order BadKinds lists them.
const (
	BadNone BadKind = ""
	// BadInvalidJSON: the good payload cut in half.
	BadInvalidJSON BadKind = "invalid_json"
	// BadTemperatureString: every reading has its temperature as a quoted
	// number, e.g. "temperature":"21.37".
	BadTemperatureString BadKind = "temperature_string"
	// BadMissingDevice: no "device" field, and an empty device level in
	// the topic, so the device cannot be recovered from either.
	BadMissingDevice BadKind = "missing_device"
	// BadEmptyArray: the payload is [].
	BadEmptyArray BadKind = "empty_array"
	// BadExtraFields: the good readings plus unknown fields ("firmware",
	// "battery"). Valid: its readings are good and reported.
	BadExtraFields BadKind = "extra_fields"
	// BadHuge: a HugeSize payload that is not valid JSON either (an
	// unterminated string), bad whatever the size limit.
	BadHuge BadKind = "huge_payload"
)

// BadKinds are the kinds Bad draws from, uniformly.
var BadKinds = []BadKind{BadInvalidJSON, BadTemperatureString, BadMissingDevice, BadEmptyArray, BadExtraFields, BadHuge}

// Message is one generated MQTT message.
type Message struct {
	Topic   string
	Payload []byte
	// Readings are the good readings the payload carries (nil for a bad
	// message other than BadExtraFields). Tests compute expected results
	// from these.
	Readings []Reading
	// Generated is how many readings of the stream this message stands
	// for (a bad message replaces the readings it would have carried).
	Generated int
	Bad       BadKind
	End       bool // the end marker
}

// withDefaults fills in zero fields.
func (o Options) withDefaults() Options {
	if o.Sites == 0 {
		o.Sites = 1
	}
	if o.Batch == 0 {
		o.Batch = 1
	}
	if o.Start.IsZero() {
		o.Start = DefaultStart
	}
	if o.Interval == 0 {
		if o.Rate > 0 {
			o.Interval = max(time.Duration(float64(time.Second)/o.Rate), 1)
		} else {
			o.Interval = 10 * time.Millisecond
		}
	}
	if o.TopicPattern == "" {
		o.TopicPattern = DefaultTopicPattern
	}
	if o.EndMarkerDelay == 0 {
		o.EndMarkerDelay = EndMarkerDelay
	}
	return o
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("simulate: %s: "+format, append([]any{key}, args...)...))
	}
	if o.Devices < 1 {
		bad("devices", "%d: want at least 1", o.Devices)
	}
	if o.Sites < 0 || (o.Devices >= 1 && o.Sites > o.Devices) {
		bad("sites", "%d: want 1..devices (%d)", o.Sites, o.Devices)
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		bad("rate", "%v: want a finite number >= 0 (0 = as fast as possible)", o.Rate)
	}
	if o.Batch < 0 {
		bad("batch", "%d: want at least 1", o.Batch)
	}
	switch {
	case o.Count < 0:
		bad("count", "%d is negative", o.Count)
	case o.Duration < 0:
		bad("duration", "%v is negative", o.Duration)
	case o.Count > 0 && o.Duration > 0:
		bad("count", "set count or duration, not both")
	case o.Count == 0 && o.Duration == 0:
		bad("count", "set count or duration")
	}
	if o.Disorder < 0 {
		bad("disorder", "%v is negative", o.Disorder)
	}
	if o.Interval < 0 {
		bad("interval", "%v is negative", o.Interval)
	}
	if o.EndMarkerDelay < 0 {
		bad("end_marker_delay", "%v is negative", o.EndMarkerDelay)
	}
	if o.Bad < 0 || o.Bad > 1 || math.IsNaN(o.Bad) {
		bad("bad", "%v: want a fraction in [0, 1]", o.Bad)
	}
	if p := o.TopicPattern; strings.ContainsAny(p, "+#\x00") {
		bad("topic_pattern", "%q: a topic to publish to cannot hold +, # or NUL", p)
	}
	return errors.Join(errs...)
}

// Total returns the number of readings the options give (the end marker
// not included).
func (o Options) Total() (int, error) {
	if err := o.Validate(); err != nil {
		return 0, err
	}
	return o.withDefaults().total(), nil
}

func (o Options) total() int {
	if o.Count > 0 {
		return o.Count
	}
	if o.Rate > 0 {
		return int(math.Round(o.Duration.Seconds() * o.Rate))
	}
	return int(o.Duration / o.Interval)
}

// Generate calls fn for every message of the stream, in order, with its
// topic, payload and the good readings it carries (none for bad input).
// It stops at the first error fn returns.
func Generate(o Options, fn func(topic string, payload []byte, readings []Reading) error) error {
	return GenerateMessages(o, func(m Message) error { return fn(m.Topic, m.Payload, m.Readings) })
}

// PCG stream selectors: each purpose draws from its own sequence.
const (
	streamJitter = 0x6a69747465720001
	streamBad    = 0x6261640000000002
	streamDevice = 0x6465766963650000 // + device index
)

// unit returns a float64 in [0, 1) from the top 53 bits.
func unit(r *rand.PCG) float64 { return float64(r.Uint64()>>11) / (1 << 53) }

// device is one device's state.
type device struct {
	name, site string
	rng        *rand.PCG
	temp, hum  float64
	buf        []Reading
}

// walk moves v by a uniform step in [-step, step], reflected into [lo, hi].
func walk(r *rand.PCG, v, step, lo, hi float64) float64 {
	v += (unit(r)*2 - 1) * step
	if v < lo {
		v = 2*lo - v
	}
	if v > hi {
		v = 2*hi - v
	}
	return min(max(v, lo), hi)
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// GenerateMessages is Generate with the details of each message: the
// kind of bad input, how many readings it replaced, the end marker.
func GenerateMessages(o Options, fn func(m Message) error) error {
	if err := o.Validate(); err != nil {
		return err
	}
	o = o.withDefaults()
	g := &generator{o: o, fn: fn, bad: rand.NewPCG(uint64(o.Seed), streamBad)}
	return g.run()
}

type generator struct {
	o     Options
	fn    func(Message) error
	bad   *rand.PCG
	buf   []byte
	maxTS int64
}

func (g *generator) run() error {
	o := g.o
	devs := make([]*device, o.Devices)
	for k := range devs {
		d := &device{
			name: deviceName(k + 1),
			site: "site-" + strconv.Itoa(k%o.Sites+1),
			rng:  rand.NewPCG(uint64(o.Seed), streamDevice+uint64(k)),
		}
		d.temp = 18 + unit(d.rng)*12 // start in [18, 30)
		d.hum = 40 + unit(d.rng)*20  // start in [40, 60)
		devs[k] = d
	}
	jitter := rand.NewPCG(uint64(o.Seed), streamJitter)
	disorderMs := uint64(o.Disorder / time.Millisecond)
	start := o.Start.UnixNano()
	g.maxTS = math.MinInt64
	n := o.total()
	for i := 0; i < n; i++ {
		d := devs[i%o.Devices]
		ts := floorDiv(start+int64(i)*int64(o.Interval), int64(time.Millisecond))
		if disorderMs > 0 {
			ts -= int64(jitter.Uint64() % (disorderMs + 1))
		}
		d.temp = walk(d.rng, d.temp, 0.25, TemperatureMin, TemperatureMax)
		d.hum = walk(d.rng, d.hum, 0.5, HumidityMin, HumidityMax)
		d.buf = append(d.buf, Reading{Device: d.name, Site: d.site, TS: ts, Temperature: round2(d.temp), Humidity: round2(d.hum)})
		g.maxTS = max(g.maxTS, ts)
		if len(d.buf) == o.Batch {
			if err := g.emit(d); err != nil {
				return err
			}
		}
	}
	for _, d := range devs {
		if len(d.buf) > 0 {
			if err := g.emit(d); err != nil {
				return err
			}
		}
	}
	if !o.EndMarker {
		return nil
	}
	endTS := o.Start.UnixMilli()
	if n > 0 {
		endTS = g.maxTS
	}
	end := Reading{Device: EndDevice, Site: "site-1", TS: endTS + o.EndMarkerDelay.Milliseconds(), Temperature: 20, Humidity: 50}
	rs := []Reading{end}
	return g.fn(Message{
		Topic:    g.topic(end.Site, end.Device),
		Payload:  g.encode(nil, rs, BadNone),
		Readings: rs,
		End:      true,
	})
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func deviceName(k int) string { return fmt.Sprintf("dev-%04d", k) }

// emit sends device d's buffered readings as one message, perhaps replaced
// by bad input.
func (g *generator) emit(d *device) error {
	rs := d.buf
	d.buf = make([]Reading, 0, g.o.Batch)
	kind := BadNone
	if g.o.Bad > 0 && unit(g.bad) < g.o.Bad {
		kind = BadKinds[g.bad.Uint64()%uint64(len(BadKinds))]
	}
	m := Message{Topic: g.topic(d.site, d.name), Readings: rs, Generated: len(rs), Bad: kind}
	switch kind {
	case BadNone, BadExtraFields, BadTemperatureString:
		m.Payload = g.encode(nil, rs, kind)
	case BadInvalidJSON:
		good := g.encode(nil, rs, BadNone)
		m.Payload = good[:len(good)/2]
	case BadMissingDevice:
		m.Topic = g.topic(d.site, "")
		m.Payload = g.encode(nil, rs, kind)
	case BadEmptyArray:
		m.Payload = []byte("[]")
	case BadHuge:
		p := make([]byte, 0, HugeSize)
		p = fmt.Appendf(p, `{"device":%q,"site":%q,"ts":%d,"note":"`, d.name, d.site, rs[0].TS)
		for len(p) < HugeSize {
			p = append(p, 'x')
		}
		m.Payload = p
	}
	if kind != BadNone && kind != BadExtraFields {
		m.Readings = nil
	}
	return g.fn(m)
}

func (g *generator) topic(site, device string) string {
	return strings.NewReplacer("{site}", site, "{device}", device).Replace(g.o.TopicPattern)
}

// encode appends the JSON of rs (an object for Batch 1, else an array),
// shaped by kind, to dst.
func (g *generator) encode(dst []byte, rs []Reading, kind BadKind) []byte {
	array := g.o.Batch > 1
	if array {
		dst = append(dst, '[')
	}
	for i, r := range rs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if kind != BadMissingDevice {
			dst = append(dst, `"device":`...)
			dst = strconv.AppendQuote(dst, r.Device)
			dst = append(dst, ',')
		}
		dst = append(dst, `"site":`...)
		dst = strconv.AppendQuote(dst, r.Site)
		dst = append(dst, `,"ts":`...)
		dst = strconv.AppendInt(dst, r.TS, 10)
		dst = append(dst, `,"temperature":`...)
		if kind == BadTemperatureString {
			dst = append(dst, '"')
			dst = strconv.AppendFloat(dst, r.Temperature, 'f', 2, 64)
			dst = append(dst, '"')
		} else {
			dst = strconv.AppendFloat(dst, r.Temperature, 'f', 2, 64)
		}
		dst = append(dst, `,"humidity":`...)
		dst = strconv.AppendFloat(dst, r.Humidity, 'f', 2, 64)
		if kind == BadExtraFields {
			dst = append(dst, `,"firmware":"1.4.2","battery":87`...)
		}
		dst = append(dst, '}')
	}
	if array {
		dst = append(dst, ']')
	}
	return dst
}

// PublishFunc publishes one message; mqttio.Publisher.Publish is one.
type PublishFunc func(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error

// Stats describe what Run published. They add up:
// Messages = GoodMessages + BadMessages + EndMarkers and
// Readings = GoodReadings + LostReadings.
type Stats struct {
	Messages     int64 // published, the end marker included
	GoodMessages int64 // messages carrying good readings (ExtraFields included)
	ExtraFields  int64 // good messages with unknown extra fields (BadExtraFields)
	BadMessages  int64 // messages replaced by bad input, carrying no good reading
	EndMarkers   int64 // 0 or 1
	Readings     int64 // readings of the stream (the end marker not included)
	GoodReadings int64 // readings in good messages (the end marker not included)
	LostReadings int64 // readings of the stream that bad messages replaced
	Bytes        int64 // payload bytes
	Elapsed      time.Duration
}

// String is the summary `eddy simulate` prints.
func (s Stats) String() string {
	b := fmt.Sprintf("published %d messages: %d good", s.Messages, s.GoodMessages)
	if s.ExtraFields > 0 {
		b += fmt.Sprintf(" (%d with extra fields)", s.ExtraFields)
	}
	b += fmt.Sprintf(", %d bad", s.BadMessages)
	if s.EndMarkers > 0 {
		b += fmt.Sprintf(", %d end marker", s.EndMarkers)
	}
	return b + fmt.Sprintf("; %d readings: %d good, %d in bad messages; %d bytes in %s",
		s.Readings, s.GoodReadings, s.LostReadings, s.Bytes, s.Elapsed.Round(time.Millisecond))
}

// Run publishes the stream with QoS 1 through pub, paced at o.Rate readings
// per second (a token bucket holding at most one second of readings, so a
// stall is not followed by a longer burst; no pacing when Rate is 0). It
// does not wait for acknowledgements: flush the publisher afterwards. It
// stops at ctx's end or the first publish error.
func Run(ctx context.Context, o Options, pub PublishFunc) (Stats, error) {
	var st Stats
	if err := o.Validate(); err != nil {
		return st, err
	}
	start := time.Now()
	batch := float64(max(o.Batch, 1))
	p := pacer{rate: o.Rate, burst: max(o.Rate, batch), tokens: batch, last: start}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	err := GenerateMessages(o, func(m Message) error {
		wait := p.take(float64(max(m.Generated, 1)), time.Now())
		if m.End && o.EndMarkerOnTime {
			wait = max(wait, time.Until(time.UnixMilli(m.Readings[0].TS)))
		}
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := pub(ctx, m.Topic, m.Payload, 1, false); err != nil {
			return fmt.Errorf("simulate: publish to %s: %w", m.Topic, err)
		}
		st.Messages++
		st.Readings += int64(m.Generated)
		switch {
		case m.End:
			st.EndMarkers++
		case len(m.Readings) > 0:
			st.GoodMessages++
			st.GoodReadings += int64(len(m.Readings))
			if m.Bad == BadExtraFields {
				st.ExtraFields++
			}
		default:
			st.BadMessages++
			st.LostReadings += int64(m.Generated)
		}
		st.Bytes += int64(len(m.Payload))
		return nil
	})
	st.Elapsed = time.Since(start)
	return st, err
}

// pacer is a token bucket: rate tokens a second, at most burst held.
type pacer struct {
	rate, burst, tokens float64
	last                time.Time
}

// take spends n tokens (going into debt if need be) and returns how long
// to wait until the debt is paid.
func (p *pacer) take(n float64, now time.Time) time.Duration {
	if p.rate <= 0 {
		return 0
	}
	p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	p.last = now
	p.tokens -= n
	if p.tokens >= 0 {
		return 0
	}
	return time.Duration(-p.tokens / p.rate * float64(time.Second))
}
