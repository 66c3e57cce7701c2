#!/usr/bin/env bash
# Set up a development environment from scratch: system data, a venv in .venv, and hilnas with
# every extra pinned in pyproject.toml. Idempotent; safe to re-run.
#   bash scripts/setup.sh            # everything (agent, tflite, search, ray, dev)
#   HILNAS_EXTRAS=agent,dev bash scripts/setup.sh   # a lighter set
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${HILNAS_EXTRAS:-agent,tflite,search,ray,dev}"   # ray: hilnas sweep --on ray (CI runs a sweep on a local Ray)
PY="${PYTHON:-python3}"

# Fashion-MNIST for the real-data runs and tests (Debian's package puts IDX files in
# /usr/share/datasets/fashion-mnist). Needs root; skipped with a note otherwise.
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
      || echo "setup: could not install dataset-fashion-mnist; the real-data tests will use the shipped subset" >&2
  else
    echo "setup: not root; install Debian's dataset-fashion-mnist for the real Fashion-MNIST" >&2
  fi
fi

# Node.js for the contract test in another language (tests/node: @grpc/grpc-js and
# @grpc/proto-loader from npm, exact versions in its package-lock.json).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) \
      || echo "setup: could not install nodejs/npm; tests/node will be skipped outside CI" >&2
  else
    echo "setup: not root; install nodejs and npm for tests/node" >&2
  fi
fi
if command -v npm >/dev/null; then
  (cd tests/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || echo "setup: npm ci in tests/node failed; tests/node will fail in CI" >&2
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned to the CPU build (2.13.0); an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
echo "setup: ready (.venv, extras: ${EXTRAS})"
