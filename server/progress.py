"""Progress of long commands on stderr: what runs, how far it is, the numbers that matter, an ETA.

``Progress(mode)`` shows tasks (a LUT build, a search, a training, a fidelity run):

- ``"bar"``: a tqdm bar per task, redrawn in place (a terminal);
- ``"lines"``: plain lines, at most one per task every ``interval`` seconds plus the last one,
  so a log file or a CI page stays readable (also what ``--json`` gets: stdout keeps the JSON);
- ``"off"``: nothing (``--quiet``);
- ``"auto"``: ``"bar"`` when stderr is a terminal (of some width) and tqdm is installed, else ``"lines"``.

``Task.update(done, total=..., **fields)`` moves a task; ``fields`` are shown after the count
(``loss 1.23  λ 0.41  cost 1.02/1.20 ms``). ``train_reporter`` turns the training loop's events
(``searchers.train.TrainEvent``) into updates: epoch and step, loss, and what the search's hooks
report (the DCA multiplier, the current cost against the budget). The ETA is the elapsed time
scaled by the work left, from the task's own rate.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hilnas.searchers.train import TrainEvent

MODES = ("auto", "bar", "lines", "off")


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Where a command's progress goes; make tasks with ``task`` and messages with ``say``."""

    def __init__(self, mode: str = "auto", *, stream: IO[str] | None = None, interval: float = 10.0) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if _isatty(self.stream) and _has_tqdm() else "lines"
        self.mode, self.interval = mode, interval
        self._bars = 0  # tqdm bars open now (messages go through tqdm.write meanwhile)

    @classmethod
    def for_cli(cls, *, json: bool = False, quiet: bool = False) -> "Progress":
        """What a command shows: nothing with ``--quiet``, plain lines with ``--json``, else auto."""
        return cls("off" if quiet else "lines" if json else "auto")

    def say(self, text: str) -> None:
        """A message line (between or above the bars)."""
        if self.mode == "off":
            return
        if self._bars:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def task(self, label: str, total: int | None = None, *, unit: str = "") -> "Task":
        return Task(self, label, total, unit)


class Task:
    """One long piece of work: a count towards a total, live fields, an ETA. Use as a context manager."""

    def __init__(self, progress: Progress, label: str, total: int | None, unit: str) -> None:
        self.progress, self.label, self.total, self.unit = progress, label, total, unit
        self.done, self.fields = 0, ""
        self.started = time.monotonic()
        self._rate_from: float | None = None  # the rate is measured from the first update of a round, so
        self._rate_base = 0                   # setup before it (loading data) does not count
        self._last_line = 0.0
        self._bar: Any = None
        if progress.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit=unit or "it", file=progress.stream, dynamic_ncols=True,
                             leave=True, mininterval=0.5)
            progress._bars += 1

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, done: int | None = None, *, total: int | None = None, advance: int = 0, **fields: Any) -> None:
        """Set (``done``) or advance the count; ``total`` when it becomes known; fields to show."""
        if total is not None:
            self.total = total
        new = (done if done is not None else self.done) + advance
        if new < self.done or self._rate_from is None:  # the first update, or a new round of the same work
            self._rate_from, self._rate_base = time.monotonic(), new  # (e.g. the next of several trainings)
        self.done = new
        if fields:
            self.fields = "  ".join(f"{k} {v}" for k, v in fields.items() if v is not None and v != "")
        if self._bar is not None:
            if total is not None and self._bar.total != total:
                self._bar.total = total
            self._bar.set_postfix_str(self.fields, refresh=False)
            self._bar.update(self.done - self._bar.n)
        elif self.progress.mode == "lines":
            now = time.monotonic()
            if now - self._last_line >= self.progress.interval:  # the end is close()'s line
                self._last_line = now
                self.progress.say(self.line())

    def eta_s(self) -> float | None:
        """Seconds left at the rate since this round of work began; None while unknown."""
        if not self.total or self._rate_from is None or self.done <= self._rate_base:
            return None
        rate = (self.done - self._rate_base) / max(time.monotonic() - self._rate_from, 1e-9)
        return max(self.total - self.done, 0) / rate

    def line(self) -> str:
        """The task as one plain line: ``label: 35% (56/160 steps)  loss 1.23 ... ETA 0:12``."""
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            count = f"{100 * self.done / self.total:.0f}% ({self.done}/{self.total}{unit})"
        else:
            count = f"{self.done}{unit}"
        eta = self.eta_s()
        tail = f"  ETA {format_duration(eta)}" if eta is not None and self.done < (self.total or 0) else ""
        return f"{self.label}: {count}" + (f"  {self.fields}" if self.fields else "") + tail

    def close(self, summary: str | None = None) -> None:
        """End the task; ``summary`` (e.g. ``"20 measured"``) is printed with the elapsed time."""
        elapsed = format_duration(time.monotonic() - self.started)
        if self._bar is not None:
            if summary:
                self._bar.set_postfix_str(summary, refresh=False)
            self._bar.close()
            self._bar = None
            self.progress._bars -= 1
        elif self.progress.mode == "lines" and summary is not None:
            self.progress.say(f"{self.label}: {summary} ({elapsed})")


def lut_reporter(task: Task) -> Callable[[int, int, str], None]:
    """The LUT builder's and fidelity's ``progress(done, total, key)`` as task updates."""
    def report(done: int, total: int, key: str) -> None:
        task.update(done, total=total)
    return report


def train_reporter(task: Task, *, unit: str = "") -> Callable[["TrainEvent"], None]:
    """The training loop's events as task updates: epoch, step, loss, the hooks' metrics, ETA.

    ``unit`` is the unit of a ``cost``/``budget`` pair in the metrics (e.g. ``"ms"``)."""
    def report(event: TrainEvent) -> None:
        total = event.epochs * event.steps_per_epoch or None
        fields = {"epoch": f"{event.epoch + 1}/{event.epochs}" if event.epochs else None,
                  "loss": f"{event.loss:.3f}"}
        fields.update(_metric_fields(event.metrics, unit))
        if event.kind == "epoch" and event.stats is not None and event.stats.eval_acc == event.stats.eval_acc:
            fields["acc"] = f"{100 * event.stats.eval_acc:.1f}%"
        task.update(event.global_step, total=total, **fields)  # steps taken so far, over all epochs
    return report


def _metric_fields(metrics: Mapping[str, float], unit: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if "multiplier" in metrics:
        out["λ"] = f"{metrics['multiplier']:.3g}"
    if "scale" in metrics:
        out["λ"] = f"{metrics['scale']:.3g}" + (f"/{metrics['Lambda']:.3g}" if "Lambda" in metrics else "")
    if "cost" in metrics:
        budget = f"/{metrics['budget']:.3g}" if "budget" in metrics else ""
        out["cost"] = f"{metrics['cost']:.3g}{budget}" + (f" {unit}" if unit else "")
    return out


def _isatty(stream: IO[str]) -> bool:
    """A terminal wide enough for a bar (a pseudo-terminal of 0 columns, as some CI runners open, is not)."""
    import os

    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns >= 40
    except (AttributeError, ValueError, OSError):
        return False


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["MODES", "Progress", "Task", "format_duration", "lut_reporter", "train_reporter"]
