"""The report's trade-off figure: a family with accuracy along lambda gets its accuracy panel; one
without (the pruning hypernetwork records only costs per lambda) gets no empty panel."""
import struct

import pytest

pytest.importorskip("matplotlib")

from hilnas.server.report.plots import tradeoff  # noqa: E402


def _width(png: bytes) -> int:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", png[16:20])[0]   # IHDR width


def _curve(with_acc: bool) -> dict:
    points = [{"scale": s, "latency_ms": 1.0 / (1 + s), **({"supernet_acc": 0.5 - 0.01 * s} if with_acc else {})}
              for s in (0.0, 1.0, 2.0, 4.0)]
    return {"run_id": 1, "seed": 0, "Lambda": 4.0, "points": points}


def test_a_family_without_accuracy_gets_one_panel_not_an_empty_second():
    both = _width(tradeoff("pi", [_curve(True)]))
    costs_only = _width(tradeoff("pi", [_curve(False)]))
    assert costs_only < 0.75 * both
