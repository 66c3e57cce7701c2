"""Search space descriptions and the create_space registry."""
import random

import pytest

from hilnas.searchers.genotype import DARTS_V2, NB201_OPS, Genotype, NB201Genotype
from hilnas.searchers.spaces import DartsSpace, NB201Space, SpaceError, create_space, list_spaces


def test_registry_lists_and_builds_both_spaces():
    assert {"darts", "nb201"} <= set(list_spaces())
    assert isinstance(create_space("darts"), DartsSpace) and isinstance(create_space("nb201"), NB201Space)
    fmnist = create_space("nb201", in_channels=1, input_size=28)
    assert fmnist.input_shape == (1, 1, 28, 28) and fmnist.head_size == 7
    with pytest.raises(SpaceError, match="unknown search space 'efficientnet'.*darts"):
        create_space("efficientnet")
    with pytest.raises(SpaceError, match="unexpected keyword"):
        create_space("darts", width=3)


def test_nb201_default_is_the_benchmark_network():
    s = create_space("nb201")
    assert (s.C, s.N, s.input_size, s.in_channels, s.num_classes) == (16, 5, 32, 3, 10)
    assert s.ops == NB201_OPS and len(s.edges) == 6
    layers = s.layers()
    assert [l.kind for l in layers] == ["cell"] * 5 + ["resblock"] + ["cell"] * 5 + ["resblock"] + ["cell"] * 5
    assert [(l.C_in, l.C_out, l.size, l.stride) for l in layers if l.kind == "resblock"] == [(16, 32, 32, 2),
                                                                                             (32, 64, 16, 2)]
    assert (s.head_channels, s.head_size) == (64, 8)


def test_darts_layout_follows_the_paper():
    s = create_space("darts")
    assert (s.C, s.layers, s.steps, len(s.ops), len(s.edges)) == (16, 8, 4, 8, 14)
    cells = s.cells()
    assert [c.reduction for c in cells] == [i in (2, 5) for i in range(8)]
    c3 = cells[3]  # right after the first reduction
    assert c3.reduction_prev and (c3.C_prev_prev, c3.C_prev, c3.C) == (64, 128, 32)
    assert (c3.size_prev_prev, c3.size_prev, c3.size) == (32, 16, 16)
    assert (s.head_channels, s.head_size) == (256, 8)


def test_overrides_and_validation():
    s = create_space("darts", C=4, layers=3, in_channels=1, input_size=28, num_classes=5)
    assert [c.size for c in s.cells()] == [28, 14, 7]
    assert s.input_shape == (1, 1, 28, 28)
    assert s.replace(C=8).C == 8
    for bad in ({"C": 0}, {"ops": ("none", "conv_9x9")}, {"ops": ("none",)}, {"num_classes": 0}):
        with pytest.raises(SpaceError):
            create_space("darts", **bad)
    with pytest.raises(SpaceError, match="multiple of 4"):
        create_space("nb201", input_size=30)
    with pytest.raises(SpaceError):
        create_space("nb201", ops=("none", "sep_conv_3x3"))


def test_check_rejects_genotypes_that_do_not_fit():
    darts = create_space("darts")
    darts.check(DARTS_V2)
    with pytest.raises(SpaceError, match="expected a Genotype"):
        darts.check(NB201Genotype.from_index(0))
    with pytest.raises(SpaceError, match="steps=3"):
        create_space("darts", steps=3).check(DARTS_V2)
    with pytest.raises(SpaceError, match="not in this space's ops"):
        create_space("darts", ops=("none", "skip_connect", "max_pool_3x3")).check(DARTS_V2)
    short = Genotype(DARTS_V2.normal, (2, 3), DARTS_V2.reduce, DARTS_V2.reduce_concat)
    with pytest.raises(SpaceError, match="concatenates all nodes"):
        darts.check(short)
    with pytest.raises(SpaceError, match="not in this space's ops"):
        create_space("nb201", ops=("none", "skip_connect")).check(
            NB201Genotype.from_arch_str("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"))


@pytest.mark.parametrize("name", ["darts", "nb201"])
def test_sample_gives_valid_varied_genotypes(name):
    s = create_space(name)
    rng = random.Random(0)
    gs = [s.sample(rng) for _ in range(20)]
    for g in gs:
        s.check(g)
    assert len(set(gs)) > 15
    assert [create_space(name).sample(random.Random(5)) for _ in range(2)] == [s.sample(random.Random(5))] * 2
