"""The device in the loop of a search: what the derived networks cost on the device, as the search goes.

The cost model predicts a network from its ops; the device runs it whole, with fusion and
overheads no sum of ops captures (on the simulated Raspberry Pi 4 the corrected LUT sum of a
random NB201 network is off by a median of ~7 %, up to 40 %). Seed 001's lookup graph closes
that gap with extra searches whose networks are measured. ``DeviceFeedback`` does it inside one
search instead: after each epoch the derived network is measured (each genotype once), and the
constraint dual ascent sees becomes the prediction times measured / predicted of that network,
exact for the network the search is about to return and a local correction for its neighbours.
A network can be measured again (``remeasure``): the devices draw an offset per call, so the
cost kept is the median of every measurement of it (``samples``).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class DeviceFeedback:
    """Measured / predicted cost of the search's own derived networks, and the ratio dual ascent applies."""
    measure: Callable[[Any], float]     # genotype -> device cost (budget unit); the server exports and benchmarks
    predict: Callable[[Any], float]     # genotype -> the cost model's exact cost
    ratio: float = 1.0                  # measured / predicted of the last network observed
    measured: dict[Any, float] = field(default_factory=dict)   # the median of samples
    samples: dict[Any, list[float]] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)

    def observe(self, genotype: Any, epoch: int) -> float:
        """Measure ``genotype`` unless measured before; make its ratio the current one; return its device cost."""
        self.cost_of(genotype)
        predicted = self.predict(genotype)
        self.ratio = self.measured[genotype] / predicted
        self.log.append({"epoch": epoch, "genotype": genotype.to_dict(), "predicted": predicted,
                         "measured": self.measured[genotype], "ratio": self.ratio})
        return self.measured[genotype]

    def cost_of(self, genotype: Any) -> float:
        """The device's cost of ``genotype``, measured unless it was before; the current ratio is unchanged."""
        if genotype not in self.measured:
            self.remeasure(genotype)
        return self.measured[genotype]

    def remeasure(self, genotype: Any) -> float:
        """Measure ``genotype`` once more (a new call); its cost becomes the median of all; returns this one."""
        value = float(self.measure(genotype))
        if not value > 0:
            raise ValueError(f"the device measured {value!r} for a network; a cost must be positive")
        self.samples.setdefault(genotype, []).append(value)
        self.measured[genotype] = statistics.median(self.samples[genotype])
        return value

    def device_cost(self, predicted: float, genotype: Any = None) -> float:
        """The device's cost of a network predicted at ``predicted``: measured when it was, else scaled."""
        if genotype is not None and genotype in self.measured:
            return self.measured[genotype]
        return self.ratio * predicted
