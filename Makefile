# eddy — see README.md. The two set-up commands are `make run` and `make test`.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/eddy-stream/eddy/daemon.Version=$(VERSION)
BIN     := bin/eddy

.PHONY: run test bench build deps test-deps vet fmt clean deb rpm packages package-deps

# Packages: version from git describe, made valid for deb and rpm
# (scripts/pkg-version.sh), built by nfpm (installed by install-deps.sh).
ifeq ($(origin PKG_VERSION),undefined)
PKG_VERSION := $(shell scripts/pkg-version.sh)
endif
ifeq ($(origin PKG_ARCH),undefined)
PKG_ARCH := $(shell $(GO) env GOARCH)
endif
DIST        ?= dist
NFPM         = $(shell command -v nfpm 2>/dev/null || echo "$$($(GO) env GOPATH)/bin/nfpm")

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

# Benchmarks with figures (b.ReportMetric); see test/bench and test/e2e/remote.
bench: test-deps build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/bench/ ./test/e2e/remote/ | tee bench.out

package-deps: deps
	@scripts/install-deps.sh package

# The binary packed into .deb and .rpm: version stamped, no build paths.
$(DIST)/eddy: package-deps FORCE
	@mkdir -p $(DIST)
	$(GO) build -trimpath -ldflags "-s -w -X github.com/eddy-stream/eddy/daemon.Version=$(PKG_VERSION)" -o $@ ./cmd/eddy

# dist/eddy_<version>-1_<arch>.deb and dist/eddy-<version>-1.<arch>.rpm
# nfpm expands ${PKG_VERSION} and ${PKG_ARCH} itself but not paths, so the
# binary's path is filled in here.
$(DIST)/nfpm.yaml: packaging/nfpm.yaml FORCE
	@mkdir -p $(DIST)
	sed 's|$${PKG_BIN}|$(DIST)/eddy|' packaging/nfpm.yaml > $@

deb: $(DIST)/eddy $(DIST)/nfpm.yaml
	PKG_VERSION=$(PKG_VERSION) PKG_ARCH=$(PKG_ARCH) $(NFPM) package -f $(DIST)/nfpm.yaml -p deb -t $(DIST)/

rpm: $(DIST)/eddy $(DIST)/nfpm.yaml
	PKG_VERSION=$(PKG_VERSION) PKG_ARCH=$(PKG_ARCH) $(NFPM) package -f $(DIST)/nfpm.yaml -p rpm -t $(DIST)/

packages: deb rpm

FORCE:

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .tmp bench.out $(DIST)
