"""Channel-group gates on the MobileNet backbone: the exported narrower network computes what the gated one does."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hilnas.searchers.export import export_onnx
from hilnas.searchers.prune.mobilenet import GatedMobileNet
from hilnas.searchers.spaces import create_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = create_space("mobilenet", in_channels=3, input_size=16, num_classes=4, base_widths=(8, 12, 16, 16),
                     strides=(1, 2, 2, 1))
MASKS = ((True, False, True, True), (True, True, False, False), (True, False, False, True), (True, True, True, False))


def gated_network(seed: int = 0) -> GatedMobileNet:
    torch.manual_seed(seed)
    net = SPACE.build_network(SPACE.widths_at(1.0))
    for m in net.modules():   # a trained network's BatchNorm: shifts and statistics far from the defaults
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return GatedMobileNet(net.eval(), groups=4)


def test_the_exported_pruned_mobilenet_matches_the_gated_network():
    gated = gated_network()
    gates = torch.tensor(MASKS, dtype=torch.float32)
    pruned = gated.prune(MASKS).eval()
    assert pruned.widths.widths == (6, 6, 8, 12)   # groups of 2, 3, 4, 4 channels gone: really narrower
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in gated.net.parameters())
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        want = gated(x, gates)
        assert torch.allclose(pruned(x), want, atol=1e-5)
        assert not torch.allclose(gated(x), want, atol=1e-3)   # the gates change the output
    onnx_bytes = export_onnx(pruned, (1, 3, 16, 16))
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = np.concatenate([sess.run(None, {name: x[i:i + 1].numpy()})[0] for i in range(len(x))])
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_a_layers_first_group_is_never_gated_so_every_pattern_is_a_network():
    gated = gated_network(1)
    none = tuple((False,) * 4 for _ in MASKS)
    pruned = gated.prune(none).eval()
    assert pruned.widths.widths == (2, 3, 4, 4)
    with torch.no_grad():
        x = torch.randn(2, 3, 16, 16)
        assert torch.allclose(pruned(x), gated(x, torch.zeros(4, 4)), atol=1e-5)
    with pytest.raises(ValueError, match="4 groups for each of 4 layers"):
        gated.prune(MASKS[:2])
