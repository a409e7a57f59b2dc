package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline"
	"github.com/eddy-stream/eddy/simulate"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/oracle"
)

// uplink is eddy's way to the cloud broker: a TCP relay on 127.0.0.1 the
// test cuts (every connection closed, the port refusing) and restores, so
// that the test's own subscriber, connected to the cloud broker directly,
// is subscribed again after a broker restart before eddy can reach it.
type uplink struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newUplink(t *testing.T, target string) *uplink {
	u := &uplink{t: t, target: target, addr: "127.0.0.1:0", conns: map[net.Conn]bool{}}
	u.up()
	t.Cleanup(u.down)
	return u
}

func (u *uplink) up() {
	u.t.Helper()
	var ln net.Listener
	var err error
	eddytest.Poll(10*time.Second, eddytest.PollEvery, func() bool {
		ln, err = net.Listen("tcp", u.addr) // the same port again
		return err == nil
	})
	if err != nil {
		u.t.Fatalf("uplink: %v", err)
	}
	u.mu.Lock()
	u.ln, u.addr = ln, ln.Addr().String()
	u.mu.Unlock()
	u.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.relay(c)
		}
	})
}

func (u *uplink) relay(c net.Conn) {
	s, err := net.Dial("tcp", u.target)
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil || u.ln == nil {
		c.Close()
		if s != nil {
			s.Close()
		}
		return
	}
	u.conns[c], u.conns[s] = true, true
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	u.wg.Go(func() { pipe(s, c) })
	u.wg.Go(func() { pipe(c, s) })
}

// down closes the listener and every relayed connection, and waits for the
// relay goroutines.
func (u *uplink) down() {
	u.mu.Lock()
	if u.ln != nil {
		u.ln.Close()
		u.ln = nil
	}
	for c := range u.conns {
		c.Close()
	}
	clear(u.conns)
	u.mu.Unlock()
	u.wg.Wait()
}

func sinkOf(o []pipeline.SinkState, name string) pipeline.SinkState {
	for _, s := range o {
		if s.Name == name {
			return s
		}
	}
	return pipeline.SinkState{Name: name, PublishedUpTo: -1}
}

// TestCloudSinkOutage: readings come from the plant broker, the results
// file is one sink, and an MQTT sink with its own connection publishes to
// a cloud broker. The cloud broker is killed (and eddy's uplink to it cut)
// for the second half of the stream: the file sink keeps getting every
// checkpoint's results while the cloud sink retries; eddy is killed (-9)
// during the outage and again while the cloud sink catches up. In the end
// both have every window, each result id once or repeated identically.
//
// The cloud spool is small (16 KiB): during the outage it fills, eddy
// pauses its intake (the plant broker holds the input) and checkpoints go
// on; after the outage it drains and intake resumes. eddy's RSS is logged
// before, during and after. EDDY_LONG=1 runs the long variant: 20 times
// the readings, a 1 MiB spool, and the outage held for 10 minutes once the
// spool is full, RSS sampled every 30 s.
func TestCloudSinkOutage(t *testing.T) {
	long := os.Getenv("EDDY_LONG") == "1"
	count, spoolSize, hold := 9000, "16KiB", time.Duration(0)
	if long {
		count, spoolSize, hold = 180000, "1MiB", 10*time.Minute
	}
	s := newStream(t, simulate.Options{
		Devices: 8, Sites: 2, Count: count, Interval: 10 * time.Millisecond, Start: streamStart,
		Disorder: 500 * time.Millisecond, Seed: 101, EndMarker: true,
	})
	const ooo = 2 * time.Second
	plant, cloud := startBroker(t), startBroker(t)
	link := newUplink(t, cloud.Addr())
	f := newFeeder(t, plant, "e2e-feeder")
	cf := newFeeder(t, cloud, "e2e-cloud-feeder")
	sub := subscribe(t, cloud, cf, "cloud/#")
	e := newEddy(t, plant, config{
		Parallelism: 2, Stages: windowStages("{type: tumbling, size: 5s}"), ResultsFrom: "per_device",
		Sources: []source{{Name: "readings", OOO: ooo.String()}},
		ExtraSinks: fmt.Sprintf(`  - name: cloud
    from: per_device
    mqtt:
      topic: "cloud/{site}/{device}"
      qos: 1
      connection:
        broker: "tcp://%s"
        client_id: e2e-cloud
        keep_alive: 2s
        connect_timeout: 2s
        reconnect_max_interval: 500ms
    spool:
      max_size: %s
`, link.addr, spoolSize),
	})
	want := oracle.Compute(toOracle(s.good), oracle.Window{Type: "tumbling", Size: 5000}, windowAggs, closeAt(s.endTS, ooo))
	body := s.body()
	third := len(body) / 3

	e.StartReady()
	e.Probe(f)
	recv0 := e.Overview().Ingest[0].Received
	f.MustSend(t, body[:third])
	e.WaitFor("results in the file and on the cloud broker", resultsTimeout, func() bool {
		return len(e.readResults("per_device", []string{"site", "device"}).Final) > 0 && len(sub.Results(e.appliance(), "per_device", []string{"site", "device"}).Final) > 0
	})
	// The cloud sink publishes all the first third gave before the outage:
	// otherwise the outage can begin with its results (~48 windows, more
	// than the 16 KiB spool) in one checkpoint still unpublished, the spool
	// full and intake paused before anything of the second third reaches
	// the file sink (what a loaded CI box did). The job has read the whole
	// third; the checkpoint after the next one started after that, so its
	// epoch and those before it hold every result of the third.
	var readAt int64 // the newest completed checkpoint when the third was read
	e.WaitFor("the job to read the first third", resultsTimeout, func() bool {
		in := e.Overview().Ingest[0]
		readAt = e.LatestCompleted()
		return in.Received >= recv0+int64(third) && in.Lag == 0
	})
	e.WaitFor("the cloud sink to publish every result of the first third", resultsTimeout, func() bool {
		c := sinkOf(e.Overview().Sinks, "cloud")
		return c.PublishedUpTo >= readAt+2 && c.Releasing == 0 && len(c.PendingEpochs) == 0 && c.Spool != nil && c.Spool.SpooledUpTo <= c.PublishedUpTo
	})
	rssBefore := rssOf(t, e.Pid())

	// Outage.
	link.down()
	cloud.Stop()
	atOutage := len(e.readResults("per_device", []string{"site", "device"}).Final)
	f.MustSend(t, body[third:2*third])
	var last []pipeline.SinkState
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sinks, last seen: %+v", last)
		}
	})
	e.WaitFor("the file sink to get more results while the cloud sink is stuck", resultsTimeout, func() bool {
		o := e.Overview()
		last = o.Sinks
		c, r := sinkOf(o.Sinks, "cloud"), sinkOf(o.Sinks, "results")
		return len(e.readResults("per_device", []string{"site", "device"}).Final) > atOutage &&
			c.Releasing > 0 && c.Spool != nil && c.Spool.Bytes > 0 && c.Spool.SpooledUpTo > c.PublishedUpTo &&
			r.PublishedUpTo > c.PublishedUpTo
	})
	e.Kill() // -9 during the outage
	e.StartReady()
	f.MustSend(t, body[2*third:])
	f.MustSend(t, s.end())
	// The cloud spool (16 KiB) fills: input back-pressures (the plant
	// broker holds it), and checkpoints go on.
	var full pipeline.SinkState
	e.WaitFor("the cloud spool to be full and intake paused", resultsTimeout, func() bool {
		o := e.Overview()
		last = o.Sinks
		full = sinkOf(o.Sinks, "cloud")
		return full.Spool != nil && full.Spool.Full && slices.Contains(o.IntakePaused, "sink_spool_full")
	})
	if full.Spool.Bytes > full.Spool.MaxSize+256<<10 {
		t.Errorf("cloud spool %d bytes with max_size %s: not bounded by max_size plus one checkpoint's output", full.Spool.Bytes, spoolSize)
	}
	if m := e.Metrics(); !strings.Contains(m, `eddy_sink_spool_full{sink="cloud"} 1`) || !strings.Contains(m, `eddy_intake_paused{reason="sink_spool_full"} 1`) {
		t.Errorf("metrics while the cloud spool is full lack eddy_sink_spool_full / eddy_intake_paused")
	}
	cp := e.LatestCompleted()
	e.WaitFor("checkpoints to go on while the spool is full", resultsTimeout, func() bool { return e.LatestCompleted() > cp+1 })
	rssDuring := rssOf(t, e.Pid())
	if hold > 0 { // the long variant: the outage lasts, the scenario's length, not a wait for a condition
		for end := time.Now().Add(hold); time.Now().Before(end); {
			time.Sleep(30 * time.Second)
			o := e.Overview()
			c := sinkOf(o.Sinks, "cloud")
			rss := rssOf(t, e.Pid())
			rssDuring = max(rssDuring, rss)
			t.Logf("outage: RSS %d MiB, cloud spool %d bytes, full %v, intake paused %v, newest checkpoint %d",
				rss>>20, c.Spool.Bytes, c.Spool.Full, o.IntakePaused, e.LatestCompleted())
		}
	}
	if n := len(sub.Results(e.appliance(), "per_device", []string{"site", "device"}).Final); n >= len(want) {
		t.Fatalf("the cloud subscriber has %d of %d windows while its broker was down", n, len(want))
	}

	// The cloud comes back: subscribe again, then restore the uplink.
	cloud.Restart()
	before := len(sub.Messages())
	sub.WaitProbe(t, newFeeder(t, cloud, "e2e-cloud-feeder-2"))
	link.up()
	e.WaitFor("the cloud sink to start catching up", resultsTimeout, func() bool { return len(sub.Messages()) > before })
	e.Kill() // -9 while it catches up
	e.StartReady()
	viaCloud := sub.WaitResults(e.appliance(), "per_device", []string{"site", "device"}, want)
	compareResults(t, "results on the cloud broker", viaCloud, want, windowAggs)
	got := e.waitResults("per_device", []string{"site", "device"}, want)
	compareResults(t, "results file after the cloud outage", got, want, windowAggs)
	eddytest.CrossCheck(t, got, viaCloud)
	e.WaitFor("the cloud sink to have nothing pending and intake to resume", resultsTimeout, func() bool {
		o := e.Overview()
		c := sinkOf(o.Sinks, "cloud")
		last = o.Sinks
		return len(c.PendingEpochs) == 0 && c.Releasing == 0 && c.Spool != nil && !c.Spool.Full &&
			c.Spool.SpooledUpTo == c.PublishedUpTo && !slices.Contains(o.IntakePaused, "sink_spool_full")
	})
	rssAfter := rssOf(t, e.Pid())
	final := e.readResults("per_device", []string{"site", "device"})
	compareResults(t, "results file at the end", final, want, windowAggs)
	t.Logf("%d windows; file %d lines (%d duplicates); cloud %d messages (%d duplicates)",
		len(want), final.Lines, final.Dups, viaCloud.Lines, viaCloud.Dups)
	t.Logf("eddy RSS: before the outage %d MiB, during (spool full) %d MiB, after the drain %d MiB (other processes, since kill -9)",
		rssBefore>>20, rssDuring>>20, rssAfter>>20)
	if rssDuring > rssBefore+150<<20 {
		t.Errorf("RSS during the outage %d MiB > before %d MiB + 150 MiB", rssDuring>>20, rssBefore>>20)
	}
}

// rssOf is the resident set size of process pid in bytes (/proc).
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("rss: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("rss: %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("rss: no VmRSS in /proc/%d/status", pid)
	return 0
}
