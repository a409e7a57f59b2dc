// Package remote holds the end-to-end tests and benchmarks of remote
// checkpoints (upload, and recovery from the remote): the real eddy binary,
// run by the harness of test/eddytest, against a real mosquitto
// (test/mqtttest) and a real S3 server (versitygw, test/s3test) or a
// file:// remote, fed the deterministic stream of package simulate and
// checked, window by window, against test/oracle.
//
// It lives next to the other end-to-end suite (test/e2e), in its own
// package so that it is its own test binary: `go test ./test/...` runs it
// in parallel with test/e2e, and versitygw is needed only here.
//
// Every process a test starts (eddy, mosquitto, versitygw) is stopped when
// the test ends, and all traffic stays on 127.0.0.1.
package remote
