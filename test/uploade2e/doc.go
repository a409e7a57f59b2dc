// Package uploade2e holds the end-to-end tests and benchmarks of remote
// checkpoints: the real eddy binary, built once per run, against a real
// mosquitto (test/mqtttest) and a real S3 server (versitygw, test/s3test)
// or a file:// remote, fed the deterministic stream of package simulate and
// checked, window by window, against test/oracle.
//
// Every process a test starts (eddy, mosquitto, versitygw) is stopped when
// the test ends, and all traffic stays on 127.0.0.1.
package uploade2e
