// Package eddytest is the one harness of the tests that run the real eddy
// binary: the end-to-end suites (test/e2e, test/e2e/remote, test/e2e/powercut), the service
// tests (test/service) and the benchmarks (test/bench). Production code never
// imports it; it lives under test/ so that it cannot.
//
// It builds cmd/eddy once per test binary (Binary), gives every appliance a
// directory with its configuration, data directory and a free HTTP port on
// 127.0.0.1 (New), runs the binary in its own process group with its log
// captured to a file (Instance.Start), and talks to its HTTP API with the
// daemon's own exported types (daemon.Overview, pipeline.CheckpointsOverview,
// daemon.RemoteStatus, daemon.TriggerResult). Waits poll a condition
// (Process.WaitFor) until it holds, with a deadline that only bounds how long
// a test waits; nothing sleeps to synchronise. Every process is killed when
// the test ends, and a failed test's logs are printed.
//
// The suites check what eddy delivered the same way (results.go): result
// lines of WindowStages decoded into a ResultSet, which counts identical
// repeats and reports an id with two contents, then CompareResults against
// the oracle, exact (counts) or up to summation order (other aggregates).
// A Subscriber collects the MQTT results topic.
//
// # The binary
//
// One recipe: `go build -ldflags "-X .../daemon.Version=test"` of
// github.com/eddy-stream/eddy/cmd/eddy, from the module the test runs in.
// The rule for the race detector: the binary is built with -race exactly
// when the test binary is (go test -race ./test/...), so that a race run
// checks eddy's own goroutines too and a plain run (and every benchmark)
// measures a plain binary. The binary is removed by Main or RemoveBinary.
package eddytest
