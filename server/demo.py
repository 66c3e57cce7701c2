"""``hilnas demo``: the product's promise on this machine in a few minutes, with no hardware.

Three agents start on loopback: this host (ONNX Runtime) and simulated Raspberry Pi 4 and
Pixel 3 boards. Each device's LUT is built; every search method of the NAS-Bench-201 space
(DCA-NAS, the hypernetwork, and random search under the constraint as a baseline) searches it
under two budgets per device on the Fashion-MNIST subset shipped with hilnas; each found network
is trained briefly, exported to ONNX, measured on its device and checked against its budget; and
a report is written. The methods with a space of their own follow on the simulated Pi 4, one run
per space (a run has one space): energy-aware splitting grows a small MobileNet, and the pruning
hypernetwork prunes a narrow ResNet it pre-trains first. The demo is ``hilnas run`` with the run
files written in code (``demo_configs``), so its workspace (``./hilnas-demo``) keeps everything
for ``hilnas runs`` and ``hilnas report``, and running the demo again resumes it.

Budgets are relative (``latency_ms=25%``: a quarter of the way from the space's cheapest to its
dearest network, by each device's LUT), so one setting fits a fast host and a slow board.
"""
from __future__ import annotations

import dataclasses

from hilnas.agent.config import MeasureConfig
from hilnas.server.run.config import BudgetSpec, DeviceSpec, RunConfig
from hilnas.server.run.methods import METHODS

DEFAULT_WORKSPACE = "hilnas-demo"
SCALES = ("quick", "default", "full")
DEMO_BASELINES = ("random",)


def demo_methods(space: str = "nb201") -> tuple[str, ...]:
    """Every registered method that searches ``space``, then the demo's baselines."""
    found = tuple(m.name for m in METHODS.values() if not m.baseline and space in m.spaces)
    return found + tuple(b for b in DEMO_BASELINES if b in METHODS and space in METHODS[b].spaces)


def demo_config(scale: str = "default") -> RunConfig:
    """The demo as a run: ``quick`` (CI, about a minute), ``default`` (a few minutes on 2 cores),
    ``full`` (the real Fashion-MNIST, 60,000 images, and real epochs: hours on 2 cores)."""
    if scale not in SCALES:
        raise ValueError(f"demo scale must be one of {', '.join(SCALES)}, got {scale!r}")
    budgets = tuple(BudgetSpec.parse(b) for b in (("latency_ms=40%",) if scale == "quick"
                                                  else ("latency_ms=25%", "latency_ms=50%")))
    devices = (DeviceSpec("local", budgets, local=True),
               DeviceSpec("raspi4-sim", budgets, simulate="raspi4"),
               DeviceSpec("pixel3-sim", budgets, simulate="pixel3"))
    base = RunConfig(name=f"demo ({scale})", devices=devices, methods=demo_methods(), space="nb201",
                     space_options={"C": 8, "N": 1}, dataset="demo", seeds=(0,), search_epochs=2, train_epochs=2,
                     lut_measure=MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.1),
                     measure=MeasureConfig(warmup_runs=5, min_runs=20, min_seconds=0.2), energy=True,
                     method_options={"random": {"samples": 2, "epochs": 1}}, retries=2, backoff_s=0.5)
    if scale == "quick":
        return dataclasses.replace(
            base, space_options={"C": 4, "N": 1}, search_epochs=1, train_epochs=1, max_batches=4,
            lut_measure=MeasureConfig(warmup_runs=1, min_runs=5, min_seconds=0.01),
            measure=MeasureConfig(warmup_runs=2, min_runs=10, min_seconds=0.02),
            method_options={"random": {"samples": 2, "epochs": 1}})
    if scale == "full":
        return dataclasses.replace(base, dataset="fashion-mnist", space_options={"C": 16, "N": 2}, search_epochs=10,
                                   train_epochs=20, measure=MeasureConfig(), method_options={"random": {"samples": 8, "epochs": 2}})
    return base


# The methods with a space of their own, each on the simulated Pi 4 only (the demo's CPU time is the
# three-device NAS-Bench-201 run's; these add about 20 s of CPU together at the default scale).
OWN_SPACES = {
    "mobilenet": {"base_widths": (16, 32, 64, 64), "strides": (2, 2, 1, 1)},
    "resnet18-narrow": {"C": 4, "groups": 2},
}
OWN_SPACE_OPTIONS = {
    "quick": {"splitting": {"steps": 2, "seed_epochs": 1, "step_epochs": 1, "growth": 0.5},
              "prune": {"steps": 40, "sweep_points": 3, "sweep_steps": 10}},
    "default": {"splitting": {"steps": 3, "seed_epochs": 2, "step_epochs": 1, "growth": 0.5},
                "prune": {"steps": 120, "sweep_points": 4, "sweep_steps": 20}},
    "full": {"splitting": {"steps": 6, "seed_epochs": 10, "step_epochs": 3, "growth": 0.5},
             "prune": {"steps": 2000, "sweep_points": 8, "sweep_steps": 100}},
}


def demo_configs(scale: str = "default") -> tuple[RunConfig, ...]:
    """The demo's runs: NAS-Bench-201 on all three devices (``demo_config``), then one run on the
    simulated Pi 4 for each other space that a registered method searches."""
    base = demo_config(scale)
    pi = next(d for d in base.devices if d.simulate == "raspi4")
    pi = dataclasses.replace(pi, budgets=(BudgetSpec.parse("latency_ms=40%"),))
    runs = [base]
    for space, options in OWN_SPACES.items():
        methods = tuple(m for m in demo_methods(space) if m not in base.methods)
        if not methods:
            continue
        runs.append(dataclasses.replace(
            base, name=f"demo {space} ({scale})", devices=(pi,), methods=methods, space=space,
            space_options=options, search_epochs=1 if scale == "quick" else 2, train_epochs=1,
            max_batches=8 if scale == "quick" else base.max_batches,
            method_options={m: OWN_SPACE_OPTIONS[scale][m] for m in methods if m in OWN_SPACE_OPTIONS[scale]}))
    return tuple(runs)
