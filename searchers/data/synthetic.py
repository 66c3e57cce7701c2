"""Tiny learnable image data for tests, where what the images show does not matter."""
from __future__ import annotations

import numpy as np


def synthetic_images(n: int, shape: tuple[int, int, int], num_classes: int, *,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (images float32 (n, C, H, W) roughly zero-mean unit-scale, labels int64 (n,)).

    Class k is a stripe pattern at angle pi*k/num_classes with a random phase, plus a small
    class-dependent brightness offset and Gaussian noise (sigma 0.5): easy on purpose, a small
    CNN (oriented 3x3 filters) separates the classes within one or two epochs, so tests can
    check that training works without spending time on it.
    Labels are balanced (round-robin, then shuffled).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    rng = np.random.default_rng(seed)
    c, h, w = shape
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    angle = np.pi * labels / num_classes  # (n,)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    freq = 2 * np.pi / 4.0  # a 4-pixel period: visible to 3x3 kernels even at 8x8
    proj = (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
    stripes = np.cos(freq * proj + phase[:, None, None])  # (n, H, W)
    offset = 0.5 * (labels / (num_classes - 1) - 0.5)  # in [-0.25, 0.25]
    images = stripes[:, None] + offset[:, None, None, None]
    images = images + rng.normal(0.0, 0.5, size=(n, c, h, w))
    return images.astype(np.float32), labels
