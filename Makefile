# eddy — see README.md. The two set-up commands are `make run` and `make test`.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/eddy-stream/eddy/daemon.Version=$(VERSION)
BIN     := bin/eddy

.PHONY: run test bench build deps test-deps vet fmt clean

deps:
	@scripts/install-deps.sh run

test-deps:
	@scripts/install-deps.sh test

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/eddy

# Runs eddy on configs/demo.yaml (embedded MQTT broker) with the simulator feeding it.
run: build
	@scripts/demo.sh $(BIN)

# Every test: unit tests, end-to-end tests with the real binary and a real mosquitto.
test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...

# Benchmarks with figures (b.ReportMetric); see test/bench.
bench: test-deps build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/bench/ | tee bench.out

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .tmp bench.out
