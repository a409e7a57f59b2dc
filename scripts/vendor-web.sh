#!/bin/sh
# Vendors the web page's chart library (uPlot) into daemon/web/static/vendor/
# so that `go build` needs neither npm nor a network: the files are embedded
# with go:embed and committed.
#
#   scripts/vendor-web.sh           fetch the version named in daemon/web/vendor.txt with
#                                   `npm pack` (npm checks the registry's sha512 integrity),
#                                   copy the dist files and the license, and check them
#                                   against the sha256 sums recorded there
#   scripts/vendor-web.sh --check   only check the committed files against the record (offline)
#   scripts/vendor-web.sh --update VERSION
#                                   fetch VERSION and rewrite the record with its sums
#
# daemon/web's TestWebVendoredChecksums checks the embedded files against the same record.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
record="$root/daemon/web/vendor.txt"
dest="$root/daemon/web/static/vendor"
files="uPlot.iife.min.js uPlot.min.css LICENSE"

check() {
	(cd "$dest" && grep -E '^[0-9a-f]{64}  ' "$record" | sha256sum --strict -c -)
}

if [ "${1:-}" = "--check" ]; then
	check
	exit
fi

pkg=$(sed -n "s/^package //p" "$record" 2>/dev/null || true)
if [ "${1:-}" = "--update" ]; then
	pkg="uplot@${2:?usage: $0 --update VERSION}"
fi
case "$pkg" in
uplot@[0-9]*) ;;
*) echo "vendor-web: $record names no package (want a line 'package uplot@X.Y.Z')" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "vendor-web: npm is not installed (apt-get install npm)" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz)
mkdir -p "$dest"
cp "$scratch/package/dist/uPlot.iife.min.js" "$scratch/package/dist/uPlot.min.css" "$scratch/package/LICENSE" "$dest/"

if [ "${1:-}" = "--update" ]; then
	{
		echo "# The web page's vendored chart library: written by scripts/vendor-web.sh --update,"
		echo "# checked by scripts/vendor-web.sh and by daemon/web's TestWebVendoredChecksums."
		echo "package $pkg"
		(cd "$dest" && sha256sum $files)
	} >"$record"
fi
check
echo "vendor-web: $pkg in ${dest#"$root"/}"
