"""Progress of long commands: plain lines (CI, logs, --json) with the numbers that matter and an ETA."""
from __future__ import annotations

import io

import pytest

from hilnas.searchers.train.types import EpochStats, TrainEvent
from hilnas.server.progress import Progress, format_duration, lut_reporter, train_reporter


def test_lines_mode_is_throttled_has_an_eta_and_ends_with_a_summary(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr("hilnas.server.progress.time.monotonic", lambda: now[0])
    out = io.StringIO()
    progress = Progress("lines", stream=out, interval=10.0)
    with progress.task("LUT pi", unit="op") as task:
        report = lut_reporter(task)
        for done in range(1, 41):
            now[0] += 1.0
            report(done, 40, f"key{done}")
        task.close("40 measured")
    lines = out.getvalue().splitlines()
    # one line every 10 s of a 40 s task, then the summary
    assert lines[0] == "LUT pi: 2% (1/40 op)"  # no rate yet: no ETA
    assert lines[1].startswith("LUT pi: 28% (11/40 op)") and lines[1].endswith("ETA 0:29")
    assert len(lines) == 5 and lines[-1] == "LUT pi: 40 measured (0:40)"


def test_training_events_show_epoch_loss_multiplier_and_cost_against_the_budget() -> None:
    out = io.StringIO()
    progress = Progress("lines", stream=out, interval=0.0)
    task = progress.task("pi · dca · latency_ms=40% · search", unit="step")
    report = train_reporter(task, unit="ms")
    report(TrainEvent("step", 0, 3, 1.2345, 0.05, epochs=2, steps_per_epoch=10,
                      metrics={"multiplier": 0.41, "cost": 1.02, "budget": 1.2}))
    stats = EpochStats(epoch=2, train_loss=0.9, train_acc=0.6, eval_loss=1.0, eval_acc=0.55, lr=0.01, seconds=1.0,
                       batches=10)
    report(TrainEvent("epoch", 1, 20, 0.9, 0.01, stats, epochs=2, steps_per_epoch=10))
    first, second = out.getvalue().splitlines()
    assert first == "pi · dca · latency_ms=40% · search: 15% (3/20 step)  epoch 1/2  loss 1.234  λ 0.41  cost 1.02/1.2 ms"
    assert second == "pi · dca · latency_ms=40% · search: 100% (20/20 step)  epoch 2/2  loss 0.900  acc 55.0%"


def test_off_prints_nothing_and_cli_modes() -> None:
    out = io.StringIO()
    progress = Progress("off", stream=out)
    progress.say("hello")
    with progress.task("x", 3) as task:
        task.update(3, loss="1")
        task.close("done")
    assert out.getvalue() == ""
    assert Progress.for_cli(json=True).mode == "lines"  # stdout keeps the JSON; progress goes to stderr
    assert Progress.for_cli(quiet=True).mode == "off"
    assert Progress("auto", stream=io.StringIO()).mode == "lines"  # not a terminal
    with pytest.raises(ValueError, match="progress mode"):
        Progress("fancy")
    assert (format_duration(75), format_duration(3725)) == ("1:15", "1:02:05")
