// Package service holds the tests of eddy as a service: the real binary,
// run by the harness of test/eddytest with its embedded MQTT broker, under
// a fake systemd (NOTIFY_SOCKET, WATCHDOG_USEC), through reloads and
// SIGTERM, its web page in headless Chromium, /metrics parsed as
// Prometheus does, and the access token of its HTTP API. Readings come
// from `eddy simulate`.
package service
