"""Shared helpers of the benchmarks: results as JSON with the machine they were measured on."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_1m_at_start": os.getloadavg()[0]}


def write(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


def median(xs):
    return statistics.median(xs)


def warm_torch() -> None:
    """Pay torch's one-time lazy imports before anything is timed.

    The first optimizer a process builds imports ``torch._dynamo`` (about 2 s here); without this
    the first method a benchmark times would carry that cost and the second would not.
    """
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
