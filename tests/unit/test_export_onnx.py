"""Network export: ONNX checked and compared with torch under ONNX Runtime; TFLite only with its extra."""
import importlib.util
import random

import onnx
import pytest
import torch

from hilnas.searchers.export import ExportError, MissingExtraError, export_onnx, export_tflite, verify_onnx
from hilnas.searchers.genotype import NB201Genotype
from hilnas.searchers.model import build_network
from hilnas.searchers.spaces import create_space


def calibrate_bn(net, shape, seed=0):
    """Set BatchNorm running stats from one batch, so outputs have a trained network's O(1) scale."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one batch sets the stats
            m.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(torch.randn(8, *shape[1:]))
    return net.eval()


@pytest.mark.parametrize("name, kw", [("darts", {"C": 4, "layers": 3, "input_size": 16}),
                                      ("nb201", {"C": 8, "N": 2, "input_size": 16}),
                                      ("darts", {"C": 4, "layers": 3, "in_channels": 1, "input_size": 28})])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_network_onnx_matches_torch(name, kw, seed):
    space = create_space(name, **kw)
    net = calibrate_bn(build_network(space, space.sample(random.Random(seed))), space.input_shape)
    data = export_onnx(net, space.input_shape)
    assert verify_onnx(net, data, space.input_shape, atol=1e-4, rtol=0.0) <= 1e-4


def test_nb201_benchmark_network_exports(tmp_path):
    space = create_space("nb201")  # C=16, N=5, 32x32, 10 classes
    g = NB201Genotype.from_index(0)
    net = build_network(space, g)
    path = tmp_path / "nb201_0.onnx"
    data = export_onnx(net, space.input_shape, path)
    assert path.read_bytes() == data
    model = onnx.load_from_string(data)
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == [1, 10]
    # BN folded into every conv; only the last BN-ReLU (after an add) keeps its own
    assert [n.op_type for n in model.graph.node].count("BatchNormalization") == 1
    verify_onnx(net, data, space.input_shape)  # untrained: outputs ~1e3, checked relative to that
    assert net.training  # mode restored


def test_verify_onnx_detects_a_different_model():
    space = create_space("nb201", C=4, N=1, input_size=8)
    a = build_network(space, NB201Genotype.from_index(1))
    b = build_network(space, NB201Genotype.from_index(1))
    with pytest.raises(ExportError, match="differ"):
        verify_onnx(b, export_onnx(a, space.input_shape), space.input_shape)


def test_export_failure_is_an_export_error():
    class Bad(torch.nn.Module):
        def forward(self, x):
            return x.numpy()

    with pytest.raises(ExportError, match="ONNX export of Bad"):
        export_onnx(Bad(), (1, 1, 2, 2))


@pytest.mark.skipif(importlib.util.find_spec("litert_torch") is not None, reason="litert_torch is installed")
def test_tflite_without_the_converter_names_the_package():
    with pytest.raises(MissingExtraError, match="litert-torch"):
        export_tflite(torch.nn.Identity(), (1, 1, 2, 2))


@pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None, reason="needs the litert_torch converter")
def test_tflite_export_runs_under_litert():
    from ai_edge_litert.interpreter import Interpreter
    space = create_space("nb201", C=4, N=1, input_size=8)
    data = export_tflite(build_network(space, NB201Genotype.from_index(3)), space.input_shape)
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    assert list(interp.get_output_details()[0]["shape"]) == [1, 10]
