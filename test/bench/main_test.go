package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/eddy-stream/eddy/storage/state"
	"github.com/eddy-stream/eddy/test/eddytest"
	"github.com/eddy-stream/eddy/test/mqtttest"
)

// TestMain stops the shared broker and removes the eddy binary (built by
// test/eddytest on first use) once every benchmark has run, and prints
// issue 13's targets beside the figures of the benchmarks that ran.
func TestMain(m *testing.M) {
	code := m.Run()
	printTargets(os.Stdout, issue13, figure)
	procTB.cleanup()
	eddytest.RemoveBinary()
	os.Exit(code)
}

// processTB lets the mosquitto of mqtttest live for the whole test binary,
// so that every MQTT benchmark runs against the same broker process.
// Failures go to the benchmark that is starting the broker; temporary
// directories and the broker itself are cleaned up when TestMain ends.
type processTB struct {
	testing.TB // only for the unexported method; every method used is below
	mu         sync.Mutex
	cur        testing.TB
	cleanups   []func()
}

var procTB = &processTB{}

func (t *processTB) Helper() {}
func (t *processTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}
func (t *processTB) TempDir() string {
	d, err := os.MkdirTemp("", "eddy-bench-broker-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
func (t *processTB) Fatalf(format string, args ...any) { t.cur.Fatalf(format, args...) }
func (t *processTB) Fatal(args ...any)                 { t.cur.Fatal(args...) }
func (t *processTB) Logf(format string, args ...any)   { t.cur.Logf(format, args...) }
func (t *processTB) Failed() bool                      { return false }

func (t *processTB) cleanup() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

var (
	brokerMu sync.Mutex
	broker   *mqtttest.Broker
)

// sharedBroker starts the suite's mosquitto on first use (mqtttest's
// configuration: unlimited in-flight and queued messages, no persistence).
func sharedBroker(b *testing.B) *mqtttest.Broker {
	b.Helper()
	brokerMu.Lock()
	defer brokerMu.Unlock()
	if broker == nil {
		procTB.cur = b
		broker = mqtttest.Start(procTB)
	}
	return broker
}

// procStatus returns a field of /proc/<pid>/status in kB ("VmHWM", "VmRSS").
func procStatus(pid string, field string) (int64, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			fs := strings.Fields(rest)
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%s/status: no %s", pid, field)
}

// peakRSSMiB is VmHWM of pid ("self" for this process) in MiB.
func peakRSSMiB(b *testing.B, pid string) float64 {
	kb, err := procStatus(pid, "VmHWM")
	if err != nil {
		b.Logf("peak RSS: %v", err)
		return 0
	}
	return float64(kb) / 1024
}

// resetPeakRSS returns memory to the OS (Go's and malloc's) and resets this process's VmHWM
// (clear_refs 5), so an in-process benchmark reports its own peak.
func resetPeakRSS(b *testing.B) {
	runtime.GC()
	debug.FreeOSMemory()
	state.TrimMalloc()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset peak RSS (figure includes earlier benchmarks): %v", err)
	}
}

// cpuSeconds is user+system CPU time of pid from /proc/<pid>/stat.
func cpuSeconds(pid int) float64 {
	return statCPUSeconds("/proc/" + strconv.Itoa(pid) + "/stat")
}

// threadCPUSeconds is the user+system CPU time of the threads of pid
// whose name (comm) is name, such as RocksDB's background threads:
// "rocksdb:low" runs compactions, "rocksdb:high" memtable flushes
// (RocksDB names its thread pools so). Threads that ended are not counted;
// RocksDB's pool threads live as long as the process.
func threadCPUSeconds(pid int, name string) float64 {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n float64
	for _, t := range tasks {
		comm, err := os.ReadFile(dir + "/" + t.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		n += statCPUSeconds(dir + "/" + t.Name() + "/stat")
	}
	return n
}

// contextSwitches is the voluntary and involuntary context switches of
// every thread of pid that is alive now (/proc/<pid>/task/*/status): a
// thread that blocks (a read with nothing to read, a futex wait) and is
// woken again counts one voluntary switch.
func contextSwitches(pid int) (voluntary, involuntary int64) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, t := range tasks {
		v, _ := procStatus(strconv.Itoa(pid)+"/task/"+t.Name(), "voluntary_ctxt_switches")
		n, _ := procStatus(strconv.Itoa(pid)+"/task/"+t.Name(), "nonvoluntary_ctxt_switches")
		voluntary, involuntary = voluntary+v, involuntary+n
	}
	return voluntary, involuntary
}

// statCPUSeconds is user+system CPU time from a /proc stat file.
func statCPUSeconds(path string) float64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// reportLoad reports the 1-minute load average of the machine at the end
// of a benchmark: the box may be shared, and figures taken under a load
// above 2 (its cores) are not comparable.
func reportLoad(b *testing.B) {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return
	}
	if f := strings.Fields(string(data)); len(f) > 0 {
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			metric(b, v, "loadavg_1m")
		}
	}
}
