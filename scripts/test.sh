#!/usr/bin/env bash
# The test command (README: "run the tests"): the proto is current, then the whole suite.
# pytest's exit code 5 (no tests collected) is a failure here, as it is for CI.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "test: run 'bash scripts/setup.sh' first" >&2; exit 2; }
"$PY" -m pytest -q "$@"
rc=$?
if [ "$rc" = 5 ]; then echo "test: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
