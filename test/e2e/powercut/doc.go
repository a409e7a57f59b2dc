// Package powercut is the power-cut suite: eddy's data_dir, its rotating
// file sinks and (in some cases) its file:// upload remote on a
// test/powercut mount, fed over MQTT, killed with SIGKILL and the power cut
// (everything not fsynced dropped) at random moments, 20 and more times per
// run; then every window result is checked exactly against the oracle, in
// every file of the rotated file sink and on the MQTT results topic.
//
// It is a suite of its own under test/e2e (not part of test/powercut,
// which is the file system and its unit tests, quick to run on their own)
// because it runs the real binary like the other end-to-end suites and
// shares their harness (test/eddytest). It needs /dev/fuse and root; the
// tests skip with a message otherwise.
//
// E2E_POWERCUT_SEED=n picks the seed of the random moments (and of the
// stream); it is logged, so a failing run can be replayed.
package powercut
