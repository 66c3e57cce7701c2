"""The MobileNet pruned by channel groups (seed 004's second granularity on a network without shortcuts).

- ``space``: the backbone as a prunable space (channel groups per layer, the op keys of the pruned widths);
- ``network``: its gated network and the real narrower network a pattern exports to;
- ``cost``: the expected cost of relaxed gates at the LUT grid's interpolated prices;
- ``genotype``: what an exported pruned MobileNet carries (torch-free, registered by ``searchers.spaces``).

Algorithm 1 (``searchers.prune.search``) runs on it unchanged. This ``__init__`` imports nothing, so
``space`` and ``genotype`` stay torch-free.
"""
