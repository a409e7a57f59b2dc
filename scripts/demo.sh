#!/usr/bin/env bash
# make run: eddy on configs/demo.yaml with its embedded broker, fed by the simulator.
# No end marker: the demo's idle_advance closes the last windows 5 s after the
# simulator goes quiet, and real readings published later are never late.
set -euo pipefail
bin=${1:-bin/eddy}
cfg=configs/demo.yaml
mkdir -p .tmp/demo
"$bin" simulate --broker tcp://127.0.0.1:1883 --devices 20 --sites 4 --rate 200 --duration 0 --disorder 2s >.tmp/demo/simulate.log 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT
cat <<MSG
eddy demo
  web page:    http://127.0.0.1:8086/   (API: /api/v1/overview, /api/v1/checkpoints, /metrics)
  results:     tail -f .tmp/demo/results.jsonl   (also MQTT topic results/<site>/<device> on 127.0.0.1:1883)
               first results within ~20 s; the last windows ~10-15 s after the simulator stops
  dead letters .tmp/demo/dead-letters.jsonl
  stop:        Ctrl-C
MSG
"$bin" run --config "$cfg"
