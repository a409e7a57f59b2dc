#!/usr/bin/env bash
# Prints the package version for .deb and .rpm from `git describe`:
#   on tag v1.2.0                 -> 1.2.0
#   3 commits after v1.2.0        -> 1.2.0+git3.gabc1234
#   tag v1.3.0-rc1                -> 1.3.0~rc1        (sorts before 1.3.0)
#   no tag yet (42 commits)       -> 0.0.0~git42.gabc1234
#   uncommitted changes           -> ... plus .dirty (+dirty on a tag)
#   not a git checkout            -> 0.0.0~dev
# Every form is a valid Debian and RPM version and sorts in commit order.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "0.0.0~dev"
  exit 0
fi
dirty=""
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  dirty=1
fi
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
  d=${d#v}
  if [[ $d =~ ^(.+)-([0-9]+)-g([0-9a-f]+)$ ]]; then
    base=${BASH_REMATCH[1]//-/\~}
    v="$base+git${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
    [ -n "$dirty" ] && v="$v.dirty"
  else
    v=${d//-/\~}
    [ -n "$dirty" ] && v="$v+dirty"
  fi
else
  v="0.0.0~git$(git rev-list --count HEAD 2>/dev/null || echo 0).g$(git rev-parse --short HEAD 2>/dev/null || echo 0)"
  [ -n "$dirty" ] && v="$v.dirty"
fi
echo "$v"
