"""Search spaces as plain data, built by name: ``create_space("nb201")``, ``create_space("darts", C=8)``,
``create_space("mobilenet")``, ``create_space("resnet18-narrow")``."""
from hilnas.searchers.spaces.base import SearchSpace, SpaceError, create_space, list_spaces, register_space
from hilnas.searchers.spaces.darts import DartsCellSpec, DartsSpace
from hilnas.searchers.spaces.nb201 import NB201Layer, NB201Space
from hilnas.searchers.spaces.mobilenet import MobileNetLayer, MobileNetSpace, MobileNetWidths
from hilnas.searchers.spaces.resnet import GatePattern, NarrowResNetSpace, ResNetBlock, ResNetSpace

__all__ = ["SearchSpace", "SpaceError", "create_space", "list_spaces", "register_space",
           "DartsSpace", "DartsCellSpec", "NB201Space", "NB201Layer",
           "MobileNetSpace", "MobileNetWidths", "MobileNetLayer",
           "ResNetSpace", "NarrowResNetSpace", "ResNetBlock", "GatePattern"]

# the pruned MobileNet's genotype kind (its widths and gate masks, in an exported network's metadata) is read
# wherever genotypes are: registered here, after the spaces it builds on
from hilnas.searchers.prune.mobilenet import genotype as _pruned_mobilenet  # noqa: E402,F401
