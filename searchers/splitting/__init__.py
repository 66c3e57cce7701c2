"""Energy-aware splitting steepest descent (seed 003) on the MobileNet backbone.

``index`` (splitting matrices, their smallest eigenpairs), ``split`` (the function-preserving
split), ``knapsack`` (eq. (1)), ``costs`` (e_l from a device's LUT or FLOPs / parameters),
``grow`` (``grow_by_splitting``: the loop of training and splitting), ``checkpoint`` (Splitting-k on disk, resume),
``baselines`` (width multipliers; random splitting is ``grow_by_splitting`` with ``selection="random"``).
"""
from hilnas.searchers.splitting.baselines import width_multipliers, width_name
from hilnas.searchers.splitting.checkpoint import Checkpoint, CheckpointError
from hilnas.searchers.splitting.grow import GrowConfig, GrowthResult, device_cost, grow_by_splitting
from hilnas.searchers.splitting.index import IndexConfig, LayerIndex, splitting_indices
from hilnas.searchers.splitting.knapsack import knapsack_brute_force, knapsack_dp, knapsack_greedy
from hilnas.searchers.splitting.split import LayerSplit, split_network, split_state

__all__ = ["Checkpoint", "CheckpointError", "GrowConfig", "GrowthResult", "IndexConfig", "LayerIndex", "LayerSplit",
           "device_cost", "grow_by_splitting", "knapsack_brute_force", "knapsack_dp", "knapsack_greedy",
           "split_network", "split_state", "splitting_indices", "width_multipliers", "width_name"]
