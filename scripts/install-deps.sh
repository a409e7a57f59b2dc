#!/usr/bin/env bash
# Installs what eddy needs on Debian: the RocksDB library it links against
# (librocksdb-dev 7.8.3, matching grocksdb v1.7.14) and jemalloc, its
# allocator (libjemalloc-dev); for tests also mosquitto,
# rpm (to query the .rpm), chromium (the web page test), systemd
# (systemd-analyze verify and security), debootstrap and systemd-container
# (test/systemd boots a bookworm tree with systemd-nspawn) and nfpm; for
# packages nfpm (go install, pinned below).
# Usage: scripts/install-deps.sh [run|test|bench|package]
set -euo pipefail
what=${1:-run}
NFPM_VERSION=v2.45.2
pkgs=(librocksdb-dev libjemalloc-dev)
need_nfpm=false
case "$what" in
  test) pkgs+=(mosquitto rpm chromium systemd debootstrap systemd-container) ; need_nfpm=true ;;
  bench) pkgs+=(mosquitto) ;;
  package) need_nfpm=true ;;
esac
if ! command -v go >/dev/null 2>&1; then
  echo "eddy needs Go 1.26 or newer on PATH (https://go.dev/dl/)" >&2
  exit 1
fi
# Tests of the uploader run a real S3 server: versitygw, built from source
# (about 1.5 min the first time).
case "$what" in
  test|bench)
    if [ ! -x "$(go env GOPATH)/bin/versitygw" ]; then
      echo "installing versitygw (S3 server for the upload tests) ..."
      GOFLAGS= go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
    fi
    ;;
esac

# nfpm builds the .deb and .rpm; the Makefile finds it on PATH or in GOBIN.
if $need_nfpm; then
  gobin=$(go env GOBIN)
  [ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
  nfpm="$(command -v nfpm || echo "$gobin/nfpm")"
  if ! { [ -x "$nfpm" ] && go version -m "$nfpm" 2>/dev/null | grep -q "nfpm/v2[[:space:]]*$NFPM_VERSION"; }; then
    echo "installing nfpm $NFPM_VERSION into $gobin ..."
    GOFLAGS= go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
  fi
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
# The Debian mosquitto package starts a system broker on :1883; tests run
# their own brokers on free ports and the demo uses the embedded one.
if [[ " ${missing[*]} " == *" mosquitto "* ]] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
