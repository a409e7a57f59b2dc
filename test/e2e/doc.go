// Package e2e holds the end-to-end tests of eddy: the real binary, run by
// the harness of test/eddytest, against a real mosquitto (test/mqtttest),
// fed the deterministic stream of package simulate and checked, result by
// result, against test/oracle. The tests of remote checkpoints are next
// door, in test/e2e/remote.
//
// Every test writes its configuration and data directory under
// t.TempDir(), talks to 127.0.0.1 only, captures eddy's stderr (JSON logs)
// to a file that is printed when the test fails, and stops every process it
// started. Waits are for conditions, with generous deadlines; nothing is
// asserted about speed.
//
// Run with -short to skip the long crash loop.
package e2e
