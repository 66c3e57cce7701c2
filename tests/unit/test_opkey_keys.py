"""Op keys: encode/decode round trip, errors, enumeration, and micro-models."""
import random

import numpy as np
import onnx
import pytest
import torch

from hilnas.searchers.genotype import DARTS_V2, NB201Genotype
from hilnas.searchers.op_key import (OpKey, OpKeyError, build_op_module, decode, edge_op_keys, enumerate_op_keys,
                                     export_op_onnx, fixed_op_keys, known_ops, network_op_keys, op_input_shape,
                                     op_output_shape, register_op_builder)
from hilnas.searchers.spaces import create_space

SPACES = {
    "nb201": create_space("nb201"),
    "darts": create_space("darts"),
    "darts-fmnist": create_space("darts", C=8, layers=5, in_channels=1, input_size=28),
    "nb201-fmnist": create_space("nb201", C=8, N=2, in_channels=1, input_size=28),
}


def test_encode_format():
    k = OpKey("sep_conv_3x3", 16, 16, 32, 32, 1)
    assert k.encode() == str(k) == "sep_conv_3x3|cin=16|cout=16|h=32|w=32|s=1"
    assert decode("sep_conv_3x3|s=1|h=32|w=32|cout=16|cin=16") == k  # field order is free on input
    ext = OpKey("mbconv", 8, 16, 14, 14, 2, (("k", 5), ("e", 6)))
    assert ext.encode() == "mbconv|cin=8|cout=16|h=14|w=14|s=2|e=6|k=5"
    assert decode(ext.encode(), known_only=False) == ext


@pytest.mark.parametrize("name", SPACES)
def test_round_trip_of_every_enumerated_key(name):
    keys = enumerate_op_keys(SPACES[name])
    assert len(keys) == len(set(keys))
    for k in keys:
        text = k.encode()
        assert decode(text) == k and decode(text).encode() == text
        assert hash(decode(text)) == hash(k)


@pytest.mark.parametrize("bad, match", [
    ("", "non-empty"),
    ("sep_conv_3x3", "missing cin, cout, h, w, s"),
    ("sep_conv_3x3|cin=16|cout=16|h=32|w=32", "missing s"),
    ("sep_conv_3x3|cin=16|cout=16|h=32|w=32|s=one", "not an integer"),
    ("sep_conv_3x3|cin=16|cin=16|cout=16|h=32|w=32|s=1", "appears twice"),
    ("sep_conv_3x3|cin16|cout=16|h=32|w=32|s=1", "not name=value"),
    ("sep_conv_3x3|cin=0|cout=16|h=32|w=32|s=1", "cin must be a positive int"),
    ("conv_9x9|cin=16|cout=16|h=32|w=32|s=1", "unknown op 'conv_9x9'"),
    ("Sep Conv|cin=16|cout=16|h=32|w=32|s=1", "op name must match"),
    ("sep_conv_3x3|cin=16|cout=16|h=32|w=32|s=1|CIN=3", "bad param name"),
])
def test_bad_key_strings_say_what_is_wrong(bad, match):
    with pytest.raises(OpKeyError, match=match):
        decode(bad)


def test_bad_keys_fail_to_build_clearly():
    with pytest.raises(OpKeyError, match="keeps the channel count"):
        build_op_module(OpKey("max_pool_3x3", 8, 16, 8, 8, 1))
    with pytest.raises(OpKeyError, match="unknown op"):
        build_op_module(OpKey("mystery_op", 8, 8, 8, 8, 1))
    with pytest.raises(OpKeyError, match="stride 2"):
        build_op_module(OpKey("factorized_reduce", 8, 8, 8, 8, 1))


def test_nb201_default_space_has_a_modest_key_set():
    keys = enumerate_op_keys(SPACES["nb201"])
    # 4 ops x 3 stages + 3 adds + stem + 2 ResNet blocks + BN-ReLU + head
    assert len(keys) == 20
    assert {k.op for k in keys} == {"skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "add",
                                    "conv_bn_3x3", "resnet_block", "bn_relu", "gap_linear"}
    assert OpKey("nor_conv_3x3", 32, 32, 16, 16, 1) in keys
    assert OpKey("resnet_block", 32, 64, 16, 16, 2) in keys


def test_darts_default_space_key_count():
    keys = enumerate_op_keys(SPACES["darts"])
    # 7 ops x 5 (C, size, stride) positions + 8 preprocessing + 3 adds + 3 concats + stem + head
    assert len(keys) == 51
    assert OpKey("sep_conv_3x3", 32, 32, 32, 32, 2) in keys  # reduction-cell edge from an input
    assert OpKey("factorized_reduce", 64, 32, 32, 32, 2) in keys


@pytest.mark.parametrize("name", SPACES)
def test_edge_keys_and_network_keys_lie_in_the_enumeration(name):
    space = SPACES[name]
    all_keys = set(enumerate_op_keys(space))
    edges = edge_op_keys(space)
    n_cells = space.layers if name.startswith("darts") else 3 * space.N
    assert len(edges) == n_cells * len(space.edges) * (len(space.ops) - 1)
    assert set(edges.values()) <= all_keys and set(fixed_op_keys(space)) <= all_keys
    rng = random.Random(1)
    for _ in range(5):
        keys = network_op_keys(space, space.sample(rng))
        assert set(keys) <= all_keys
        assert keys[0].op == "conv_bn_3x3" and keys[-1].op == "gap_linear"


def test_network_keys_count_repeats_and_drop_none():
    space = SPACES["nb201"]
    g = NB201Genotype.from_arch_str("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    keys = network_op_keys(space, g)
    # node 2 has no live input, so edge 2->3 is dead too: per cell one skip and 0 adds; the conv 0->1 is dead
    assert [k.op for k in keys].count("nor_conv_3x3") == 0
    assert [k.op for k in keys].count("skip_connect") == 15
    full = NB201Genotype.from_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
                                       "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    ops = [k.op for k in network_op_keys(space, full)]
    assert ops.count("nor_conv_3x3") == 90 and ops.count("add") == 45
    darts_ops = [k.op for k in network_op_keys(SPACES["darts"], DARTS_V2)]
    assert darts_ops.count("add") == 32 and darts_ops.count("concat") == 8


@pytest.mark.parametrize("name", ["nb201", "darts-fmnist"])
def test_every_key_builds_and_has_its_declared_shapes(name):
    for k in enumerate_op_keys(SPACES[name]):
        with torch.no_grad():
            y = build_op_module(k).eval()(torch.randn(op_input_shape(k)))
        assert tuple(y.shape) == op_output_shape(k), k.encode()


def test_micro_models_of_every_nb201_key_export_and_match_torch():
    import onnxruntime as ort
    for k in enumerate_op_keys(SPACES["nb201"]):
        data = export_op_onnx(k)
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert tuple(dims) == op_input_shape(k)
        x = np.random.default_rng(0).standard_normal(op_input_shape(k)).astype(np.float32)
        (got,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})
        assert got.shape == op_output_shape(k), k.encode()


def test_micro_model_bytes_are_deterministic_per_key():
    k1, k2 = OpKey("nor_conv_3x3", 16, 16, 32, 32, 1), OpKey("nor_conv_3x3", 16, 16, 16, 16, 1)
    state = torch.random.get_rng_state()
    assert export_op_onnx(k1) == export_op_onnx(k1)
    assert export_op_onnx(k1) != export_op_onnx(k2)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global torch RNG is left alone


def test_new_ops_can_be_registered():
    register_op_builder("test_identity_op", lambda key: torch.nn.Identity())
    assert "test_identity_op" in known_ops()
    k = decode("test_identity_op|cin=2|cout=2|h=3|w=3|s=1")
    assert isinstance(build_op_module(k), torch.nn.Identity)
