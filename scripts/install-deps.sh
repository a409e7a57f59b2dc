#!/usr/bin/env bash
# Installs what eddy needs on Debian: the RocksDB library it links against
# (librocksdb-dev 7.8.3, matching grocksdb v1.7.14) and, for tests, mosquitto.
# Usage: scripts/install-deps.sh [run|test|bench]
set -euo pipefail
what=${1:-run}
pkgs=(librocksdb-dev)
case "$what" in
  test|bench) pkgs+=(mosquitto) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v go >/dev/null 2>&1; then
  echo "eddy needs Go 1.26 or newer on PATH (https://go.dev/dl/)" >&2
  exit 1
fi
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
