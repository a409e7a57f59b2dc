package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-stream/eddy/pipeline/mqttio"
	"github.com/eddy-stream/eddy/storage/diskspace"
)

// fakeDisk is a statfs whose free space the test sets.
type fakeDisk struct {
	mu   sync.Mutex
	free uint64
}

func (f *fakeDisk) set(free uint64) { f.mu.Lock(); f.free = free; f.mu.Unlock() }

func (f *fakeDisk) statfs(string) (diskspace.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return diskspace.Usage{Free: f.free, Total: 1000}, nil
}

// TestDiskBudgetPausesIntake runs the daemon with ingest_log.sync_interval
// 0s (each message fsynced before its PUBACK) and a fake statfs: a message
// is acknowledged; below disk.min_free /healthz answers 503 with the
// reason, the metrics and the overview show the pause, and a message
// received meanwhile is neither appended nor acknowledged; once the disk
// has room again intake resumes by itself and that message is appended
// and acknowledged.
func TestDiskBudgetPausesIntake(t *testing.T) {
	dir := t.TempDir()
	cfg := inProcessConfig(t, dir, "ingest_log:\n  sync_interval: 0s\ndisk:\n  min_free: 5%\n")
	d, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	disk := &fakeDisk{free: 900}
	tick := make(chan time.Time)
	d.disk.statfs, d.disk.tick = disk.statfs, tick
	done := startRun(t, d)
	base := "http://" + d.HTTPAddr()

	get := func(path string) (int, string) {
		t.Helper()
		return httpGet(t, base+path)
	}
	ingest := func() IngestOverview {
		var o Overview
		_, body := get("/api/v1/overview")
		if err := json.Unmarshal([]byte(body), &o); err != nil {
			t.Fatal(err)
		}
		return o.Ingest[0]
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d %s, want 200", code, body)
	}

	pub := mqttio.NewPublisher(mqttio.ClientOptions{Broker: d.brokerURL, ClientID: "disk-test-pub", CleanSession: true})
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	publish := func(i int, retain bool) {
		t.Helper()
		if err := pub.Publish(ctx, "sensors/a", fmt.Appendf(nil, `{"temperature": %d}`, i), 1, retain); err != nil {
			t.Fatal(err)
		}
		if err := pub.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The ingest subscribes some time after Ready: a retained message
	// reaches it whenever it does. With sync_interval 0s it is fsynced,
	// then acknowledged.
	publish(0, true)
	eventually(t, 30*time.Second, "the retained message to be acknowledged", func() bool { return ingest().Acked == 1 })
	before := ingest()
	if before.NextOffset != uint64(before.Acked) {
		t.Fatalf("before the pause: %d messages in the log, %d acknowledged", before.NextOffset, before.Acked)
	}

	disk.set(10) // below 5% of 1000
	tick <- time.Time{}
	eventually(t, 10*time.Second, "/healthz degraded", func() bool {
		code, body := get("/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"disk_full"`) &&
			strings.Contains(body, "below disk.min_free")
	})
	_, metrics := get("/metrics")
	for _, want := range []string{`eddy_intake_paused{reason="disk_full"} 1`, `eddy_intake_paused{reason="ingest_log_full"} 0`,
		fmt.Sprintf(`eddy_disk_free_bytes{path=%q} 10`, dir), fmt.Sprintf(`eddy_disk_min_free_bytes{path=%q} 50`, dir)} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var o Overview
	_, body := get("/api/v1/overview")
	if err := json.Unmarshal([]byte(body), &o); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.IntakePaused, []string{PauseDiskFull}) || len(o.Disk) != 1 || !o.Disk[0].Low || !strings.Contains(o.Status, "INTAKE PAUSED") {
		t.Errorf("overview: intake_paused %v, disk %+v, status %q", o.IntakePaused, o.Disk, o.Status)
	}

	publish(1000, false)
	eventually(t, 10*time.Second, "the paused ingest to receive the message", func() bool {
		return ingest().Received > before.Received
	})
	if in := ingest(); in.NextOffset != before.NextOffset || in.Acked != before.Acked {
		t.Fatalf("while paused: next offset %d, acked %d; want %d, %d", in.NextOffset, in.Acked, before.NextOffset, before.Acked)
	}

	disk.set(900)
	tick <- time.Time{}
	eventually(t, 10*time.Second, "the message received while paused to be appended and acknowledged", func() bool {
		in := ingest()
		return in.NextOffset == before.NextOffset+1 && in.Acked == before.Acked+1
	})
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after resume %d %s, want 200", code, body)
	}
	if err := pub.Close(); err != nil { // before the broker goes, or paho reconnects in the background
		t.Fatal(err)
	}
	d.Stop()
	if err := runResult(t, done); err != nil {
		t.Fatal(err)
	}
}

// TestDiskStateWaitRoom: waitRoom returns at once while the disk has room,
// blocks while it is low until setLow(false), and gives up on done or stop.
func TestDiskStateWaitRoom(t *testing.T) {
	var s diskState
	never := make(chan struct{})
	if !s.waitRoom(never, never) {
		t.Fatal("waitRoom with room: false")
	}
	s.setLow(true)
	s.setLow(true) // no new channel: the waiter below still wakes
	if !s.isLow() {
		t.Fatal("isLow false after setLow(true)")
	}
	got := make(chan bool)
	go func() { got <- s.waitRoom(never, never) }()
	select {
	case v := <-got:
		t.Fatalf("waitRoom returned %v while the disk is low", v)
	default:
	}
	s.setLow(false)
	if !<-got {
		t.Fatal("waitRoom: false after room returned")
	}
	s.setLow(true)
	stop := make(chan struct{})
	close(stop)
	if s.waitRoom(never, stop) {
		t.Fatal("waitRoom: true after stop while low")
	}
}

// httpGet fetches url and returns the status code and body; a transport
// error fails the test.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: time.Minute}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
