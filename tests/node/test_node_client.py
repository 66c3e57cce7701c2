"""The contract from another language: a Node.js client (@grpc/grpc-js and @grpc/proto-loader from
npm, loading only protos/) calls Health, Describe and Benchmark against a real agent on loopback.

Needs node and `npm ci` in tests/node (scripts/setup.sh does both); skipped with the command to
run when they are missing, and never skipped in CI.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from loopback import start_agent
from testmodels import mlp, sha

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
TOKEN = "node-client-token-0123456789"


def _node() -> str:
    node = shutil.which("node")
    ready = node and (HERE / "node_modules" / "@grpc" / "grpc-js").is_dir()
    if not ready:
        if os.environ.get("CI"):
            pytest.fail("node or tests/node/node_modules is missing in CI: scripts/setup.sh must install them")
        pytest.skip("needs node and its packages: apt-get install nodejs npm && (cd tests/node && npm ci)")
    return node


def test_node_client_calls_describe_benchmark_and_health(tmp_path):
    node = _node()
    model = tmp_path / "mlp.onnx"
    model.write_bytes(mlp(16, 1, seed=4))
    running = start_agent(tmp_path / "agent", token=TOKEN)
    try:
        proc = subprocess.run([node, str(HERE / "client.js"), f"127.0.0.1:{running.port}", str(model), TOKEN],
                              capture_output=True, text=True, timeout=120)
    finally:
        running.stop(0)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["health"]["reply"]["status"] == "SERVING"
    info = out["describe"]["reply"]
    assert len(info["fingerprint"]) == 16 and "onnxruntime" in info["backends"] and info["queue_size"] == 16
    bench = out["benchmark"]["reply"]
    assert bench["status"] == "STATUS_OK", bench["error"]
    assert bench["request_id"] == "node-1" and bench["op_key"] == "from-node" and bench["sha256"] == sha(model.read_bytes())
    # explicit zeros kept, unset fields defaulted (proto3 optional presence works from JS)
    assert bench["config"]["warmup_runs"] == 0 and bench["config"]["min_runs"] == 30
    assert bench["latency"]["n"] >= 30 and bench["latency"]["median_ms"] > 0
    cached = out["cached"]["reply"]
    assert cached["status"] == "STATUS_OK" and cached["latency"]["n"] >= 3   # cv_threshold 100: a busy host's spread
    bad = out["bad_hash"]["error"]
    assert bad["code"] == "INVALID_ARGUMENT" and bad["metadata"]["hilnas-status"] == "HASH_MISMATCH"
    assert out["wrong_token"]["error"]["code"] == "UNAUTHENTICATED"
