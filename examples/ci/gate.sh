#!/usr/bin/env bash
# The hilnas CI gate: measure a model on a simulated device and fail the job when it is over budget.
#
#   bash examples/ci/gate.sh MODEL.onnx BUDGET [PROFILE]
#   bash examples/ci/gate.sh model.onnx latency_ms=20 raspi4
#
# Starts a simulated agent (PROFILE: raspi4, pixel3, jetson-nano, ...; default raspi4) on loopback
# on a free port, registers it, runs `hilnas validate --budget BUDGET --junit`, stops the agent,
# and exits with validate's code: 0 within budget, 1 over budget (the upper end of the
# measurement's 95% confidence interval) or not measurable, 2 bad input.
# Environment: HILNAS_WORKSPACE (default .hilnas-ci), HILNAS_JUNIT (default reports/hilnas-gate.xml),
# HILNAS and HILNAS_AGENT (the two commands, default from PATH).
set -euo pipefail
MODEL="${1:?usage: gate.sh MODEL.onnx BUDGET [PROFILE]}"
BUDGET="${2:?usage: gate.sh MODEL.onnx BUDGET [PROFILE]}"
PROFILE="${3:-raspi4}"
WS="${HILNAS_WORKSPACE:-.hilnas-ci}"
JUNIT="${HILNAS_JUNIT:-reports/hilnas-gate.xml}"
HILNAS="${HILNAS:-hilnas}"
AGENT="${HILNAS_AGENT:-hilnas-agent}"

log="$(mktemp)"
"$AGENT" serve --simulate "$PROFILE" --port 0 --cache-dir "$WS/agent-cache" >"$log" 2>&1 &
agent=$!
trap 'kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; rm -f "$log"' EXIT
address=""
for _ in $(seq 1 150); do   # the agent prints its address once it listens
  address="$(sed -n 's/^hilnas-agent serving on //p' "$log")"
  [ -n "$address" ] && break
  kill -0 "$agent" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$address" ]; then
  echo "gate: the simulated agent did not start:" >&2
  cat "$log" >&2
  exit 2
fi

"$HILNAS" --workspace "$WS" devices remove "ci-$PROFILE" >/dev/null 2>&1 || true
"$HILNAS" --workspace "$WS" devices add "ci-$PROFILE" --address "$address" >/dev/null
"$HILNAS" --workspace "$WS" validate "$MODEL" --device "ci-$PROFILE" --budget "$BUDGET" --junit "$JUNIT"
