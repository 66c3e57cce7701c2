"""The MobileNetV1 backbone with a width per layer (the splitting search's space).

``spec`` is plain data (the space, the widths, the layers), ``keys`` its op-key family and LUT
grid, ``grid`` the LUT cost that interpolates between grid widths, ``net`` the torch network.
Only ``spec`` is imported here, so ``hilnas.searchers.spaces`` stays free of torch.
"""
from hilnas.searchers.spaces.mobilenet.spec import (MOBILENET_V1_WIDTHS, SMALL_INPUT_STRIDES, MobileNetLayer,
                                                    MobileNetSpace, MobileNetWidths, out_size)

__all__ = ["MOBILENET_V1_WIDTHS", "SMALL_INPUT_STRIDES", "MobileNetLayer", "MobileNetSpace", "MobileNetWidths",
           "out_size"]
