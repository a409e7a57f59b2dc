package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/lang"
	"github.com/eddy-stream/eddy/storage/ingestlog"
)

// testSourceChain is a source chain as buildSource makes it: parser,
// filter, map, filter, map, shuffle into three subtasks, dead letters to a
// sink.
type testSourceChain struct {
	ps    *parser
	chain collector
	sh    *shuffleNode
	dl    *deadLetters
	dead  *memSink
}

func newTestSourceChain(t *testing.T, slots bool) *testSourceChain {
	t.Helper()
	m := newTaskMetrics("test", "source")
	c := &testSourceChain{dead: &memSink{}}
	c.dl = &deadLetters{m: m, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		node: &sinkNode{ctx: context.Background(), name: "dead", sink: c.dead, m: m, log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	spec := &SourceSpec{Name: "readings", TopicFields: []string{"", "site", "device", ""},
		EventTime: EventTimeSpec{Field: "ts", Format: "auto", MaxFuture: time.Hour}}
	c.ps = newParser(spec, 1<<20)
	plan, err := compileAggregates(map[string]string{
		"count": "count()", "avg_temp": "avg(temperature)", "max_temp_f": "max(temp_f)", "sum_h": "sum(h2)",
	})
	if err != nil {
		t.Fatal(err)
	}
	c.sh = &shuffleNode{
		stage: "per_device", keyFields: []string{"site", "device"}, inputs: plan.inputs,
		maxP: 128, bufs: make([]*batch, 3), batchSize: 7, pool: &batchPool{}, dl: c.dl, m: m,
	}
	for range 3 {
		c.sh.outs = append(c.sh.outs, make(chan element, 1<<16))
	}
	m2, err := newMapNode("derived", map[string]string{
		"h2":    "humidity / 2",
		"label": "device + '@' + site",   // string concatenation: the VM
		"hq":    "humidity ?? -1",        // ??: the VM
		"n":     "humidity > 50 ? 1 : 2", // an int
		"hot":   "temp_f >= 100 or (humidity < 10 && n == 2)",
	}, c.dl, c.sh)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := lang.CompileFilter(`label != "x@y" && hq != 7 && (mode == nil || mode != "off")`)
	if err != nil {
		t.Fatal(err)
	}
	f2 := &filterNode{passthrough: passthrough{m2}, stage: "on", prog: p2, dl: c.dl}
	m1, err := newMapNode("converted", map[string]string{"temp_f": "temperature * 1.8 + 32", "device": "device"}, c.dl, f2)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := lang.CompileFilter("temperature > -50 && temperature < 150")
	if err != nil {
		t.Fatal(err)
	}
	c.chain = &filterNode{passthrough: passthrough{m1}, stage: "valid", prog: p1, dl: c.dl}
	if slots && !enableSlots(c.ps, c.chain) {
		t.Fatal("chain not on the slot path")
	}
	return c
}

// run parses the messages and returns what left the shuffle, per subtask,
// and the dead letters.
func (c *testSourceChain) run(t *testing.T, msgs []*ingestlog.Record) ([][]string, []string) {
	t.Helper()
	emit := func(r *Reading) error { return c.chain.collect(r) }
	for _, r := range msgs {
		if err := c.ps.parse(r, emit, c.dl); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.chain.end(); err != nil {
		t.Fatal(err)
	}
	if err := c.dl.node.flush(); err != nil {
		t.Fatal(err)
	}
	out := make([][]string, len(c.sh.outs))
	for i, ch := range c.sh.outs {
	drain:
		for {
			select {
			case e := <-ch:
				if e.kind == elemData {
					for _, ev := range e.b.events {
						out[i] = append(out[i], fmt.Sprintf("%d %q %d %v %v", ev.kg, ev.key, ev.ts, ev.src, e.b.vals))
					}
				}
			default:
				break drain
			}
		}
	}
	var dead []string
	for _, o := range c.dead.snapshot() {
		dead = append(dead, string(o.Payload))
	}
	return out, dead
}

// mangle makes a few random edits to a JSON text: most make it invalid,
// some keep it valid with a different shape.
func mangle(rng *rand.Rand, s string) string {
	b := []byte(s)
	for range 1 + rng.IntN(3) {
		if len(b) == 0 {
			break
		}
		i := rng.IntN(len(b))
		switch rng.IntN(4) {
		case 0:
			b = append(b[:i], b[i+1:]...)
		case 1:
			c := `{}[]",:\ 0.-+eE1tfnul` + "\x01\t\n\u00e9"
			b = append(b[:i], append([]byte{c[rng.IntN(len(c))]}, b[i:]...)...)
		case 2:
			b = b[:i]
		default:
			b = append(b[:i], append([]byte(" \t\r\n"), b[i:]...)...)
		}
	}
	return string(b)
}

func randReadingJSON(rng *rand.Rand, now int64) string {
	var kv []string
	add := func(k, v string) { kv = append(kv, fmt.Sprintf("%q:%s", k, v)) }
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	num := func() string { return fmt.Sprintf("%.3f", rng.Float64()*260-80) }
	good := func() bool { return rng.IntN(10) != 0 }
	if rng.IntN(40) != 0 {
		if good() {
			add("ts", fmt.Sprint(now-int64(rng.IntN(5000))))
		} else {
			add("ts", pick(fmt.Sprint(now-int64(rng.IntN(5000))), fmt.Sprint(now/1000), fmt.Sprintf("%q", time.UnixMilli(now).UTC().Format(time.RFC3339Nano)),
				`"yesterday"`, "null", "true", fmt.Sprint(now+2*3600_000)))
		}
	}
	if rng.IntN(40) != 0 {
		if good() {
			add("temperature", num())
		} else {
			add("temperature", pick(`"20"`, "null", "{}", "[1]", "21", "-50", "150", "-49.999"))
		}
	}
	if rng.IntN(40) != 0 {
		if good() {
			add("humidity", pick(num(), "7", "55.5", "0"))
		} else {
			add("humidity", pick("null", `"wet"`, "false"))
		}
	}
	if rng.IntN(20) == 0 {
		add("device", pick(`"dev-override"`, "12", "1.5", "true", "null", `"x"`, `{"a":1}`))
	}
	if rng.IntN(5) == 0 {
		add("site", pick(`"y"`, `"site-9"`))
	}
	if rng.IntN(4) == 0 {
		add("mode", pick(`"off"`, `"on"`, "3", "null"))
	}
	if rng.IntN(3) == 0 {
		add("extra", pick(`"unused"`, "1", `[1,2,{"b":null}]`, `"esc\"aped\u00e9"`, `{"x":[],"y":{}}`, "-0.5e-3", `"é"`, "01", "1.", "-", "[1,]"))
	}
	if rng.IntN(8) == 0 { // a duplicate key: the last wins
		add("temperature", num())
	}
	rng.Shuffle(len(kv), func(i, j int) { kv[i], kv[j] = kv[j], kv[i] })
	return "{" + strings.Join(kv, ",") + "}"
}

// TestSlotPathMatchesMapPath feeds random messages (bad JSON, arrays with
// non-objects, missing, null and mistyped fields, duplicate keys, topics
// with missing levels, event times in every form and in the future) through
// the same chain on the slot path and on the map path: the events that
// leave the shuffle and the dead letters are the same.
func TestSlotPathMatchesMapPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC).UnixMilli()
	var msgs []*ingestlog.Record
	for i := range 3000 {
		topic := fmt.Sprintf("sensors/site-%d/dev-%d/telemetry", rng.IntN(5), rng.IntN(40))
		switch rng.IntN(50) {
		case 0:
			topic = "sensors//dev-1/telemetry"
		case 1:
			topic = "sensors/site-1"
		}
		var payload string
		switch k := rng.IntN(50); {
		case k == 0:
			payload = `{"ts": 1, "temperature": `
		case k == 1:
			payload = `[]`
		case k == 2:
			payload = `42`
		case k < 25:
			var elems []string
			for range 1 + rng.IntN(8) {
				if rng.IntN(40) == 0 {
					elems = append(elems, `"not an object"`)
					continue
				}
				elems = append(elems, randReadingJSON(rng, now))
			}
			payload = "[" + strings.Join(elems, ",") + "]"
		default:
			payload = randReadingJSON(rng, now)
		}
		if rng.IntN(4) == 0 {
			payload = mangle(rng, payload)
		}
		msgs = append(msgs, &ingestlog.Record{Offset: uint64(i), Topic: topic, Payload: []byte(payload), Timestamp: now})
	}
	// The slot path's own reader (slotscan.go) takes most messages; the
	// rest go through fastjson.
	scanned := 0
	c := newTestSourceChain(t, true)
	for _, r := range msgs {
		if ok, _ := c.ps.scanSlots(r, func(*Reading) error { return nil }, c.dl); ok {
			scanned++
		}
	}
	t.Logf("%d of %d messages read by scanSlots", scanned, len(msgs))
	if scanned < len(msgs)/3 || scanned > len(msgs)*9/10 {
		t.Fatalf("scanSlots took %d of %d messages: the test exercises one reader too little", scanned, len(msgs))
	}
	mapOut, mapDead := newTestSourceChain(t, false).run(t, msgs)
	slotOut, slotDead := newTestSourceChain(t, true).run(t, msgs)
	n := 0
	for i := range mapOut {
		n += len(mapOut[i])
		if !reflect.DeepEqual(mapOut[i], slotOut[i]) {
			for j := range min(len(mapOut[i]), len(slotOut[i])) {
				if mapOut[i][j] != slotOut[i][j] {
					t.Fatalf("subtask %d, event %d:\nmap  %s\nslot %s", i, j, mapOut[i][j], slotOut[i][j])
				}
			}
			t.Fatalf("subtask %d: %d events on the map path, %d on the slot path", i, len(mapOut[i]), len(slotOut[i]))
		}
	}
	if !reflect.DeepEqual(mapDead, slotDead) {
		for j := range min(len(mapDead), len(slotDead)) {
			if mapDead[j] != slotDead[j] {
				t.Fatalf("dead letter %d:\nmap  %s\nslot %s", j, mapDead[j], slotDead[j])
			}
		}
		t.Fatalf("%d dead letters on the map path, %d on the slot path", len(mapDead), len(slotDead))
	}
	reasons := map[string]int{}
	for _, d := range mapDead {
		i := strings.Index(d, `"reason":"`)
		r := d[i+10:]
		reasons[r[:min(len(r), 40)]]++
	}
	t.Logf("%d events, %d dead letters: %v", n, len(mapDead), reasons)
	if n < 1000 || len(reasons) < 8 {
		t.Fatalf("too little exercised: %d events, %d kinds of dead letter", n, len(reasons))
	}
}

// TestEnableSlotsOnlyLinearChainsIntoAShuffle: a chain with a sink or a
// fanout, or an expression reading $env, keeps the map path.
func TestEnableSlotsOnlyLinearChainsIntoAShuffle(t *testing.T) {
	spec := &SourceSpec{Name: "s", EventTime: EventTimeSpec{Field: "ts"}}
	sh := &shuffleNode{keyFields: []string{"k"}}
	filter := func(src string, next collector) *filterNode {
		p, err := lang.CompileFilter(src)
		if err != nil {
			t.Fatal(err)
		}
		return &filterNode{passthrough: passthrough{next}, prog: p}
	}
	for _, c := range []struct {
		name  string
		chain collector
		want  bool
	}{
		{"filter into shuffle", filter("x > 1", sh), true},
		{"shuffle", sh, true},
		{"$env", filter(`$env["x"] > 1`, sh), false},
		{"fanout", filter("x > 1", fanout{sh, &shuffleNode{}}), false},
		{"sink", filter("x > 1", &sinkNode{}), false},
		{"nothing", nopCollector{}, false},
	} {
		ps := newParser(spec, 1<<20)
		if got := enableSlots(ps, c.chain); got != c.want {
			t.Errorf("%s: enableSlots = %v, want %v", c.name, got, c.want)
		}
		if (ps.sl != nil) != c.want {
			t.Errorf("%s: parser on the slot path: %v", c.name, ps.sl != nil)
		}
	}
}
