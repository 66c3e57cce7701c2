"""The tiny MobileNet and data the splitting tests share (a plain module, imported by name like loopback)."""
from __future__ import annotations

# 1x8x8 inputs, 4 classes: stem 8, a stride-2 block to 16, a block at 16 (widths at multiplier 1.0).
TINY_OVERRIDES = {"base_widths": (8, 16, 16), "strides": (1, 2, 1)}


def tiny_space(**kw):
    from hilnas.searchers.spaces import create_space
    return create_space("mobilenet", **{"in_channels": 1, "input_size": 8, "num_classes": 4, **TINY_OVERRIDES, **kw})


def tiny_data(train: int = 256, test: int = 64):
    from hilnas.searchers.data import DatasetConfig
    return DatasetConfig(name="synthetic", synthetic_shape=(1, 8, 8), synthetic_classes=4, synthetic_train=train,
                         synthetic_test=test, batch_size=32)


def calibrated(net, shape=(64, 1, 8, 8), seed=0):
    """Set BN running statistics from one random batch, so eval outputs have a trained network's scale."""
    import torch
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(torch.randn(*shape))
    return net.eval()


def trained_net(space, multiplier: float = 0.5, epochs: int = 4, seed: int = 0):
    """(net, loaders): the space's network at ``multiplier``, trained on the tiny synthetic data."""
    import torch
    from hilnas.searchers.data import loaders_for
    from hilnas.searchers.splitting.grow import GrowConfig, train_phase

    _, loaders = loaders_for(tiny_data(512))
    torch.manual_seed(seed)
    net = space.build_network(space.widths_at(multiplier))
    train_phase(net, loaders, epochs, GrowConfig(), seed)
    return net.eval(), loaders
