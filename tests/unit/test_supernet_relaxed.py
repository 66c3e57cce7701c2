"""The relaxed supernet: forward for every option set, gradients to the alphas, the speed-ups, derivation."""
import pytest
import torch

from hilnas.searchers.genotype import Genotype, NB201Genotype
from hilnas.searchers.spaces import SpaceError, create_space
from hilnas.searchers.supernet import DARTS_OPTIONS, DCA_OPTIONS, SearchCell, SupernetOptions, build_supernet, \
    derive_genotype

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACES = {
    "nb201": create_space("nb201", C=4, N=2, input_size=8, in_channels=1, num_classes=4),
    "darts": create_space("darts", C=4, layers=4, input_size=8, in_channels=1, num_classes=4),
}
OPTIONS = {"dca": DCA_OPTIONS, "darts": DARTS_OPTIONS,
           "ws+pc": SupernetOptions(derived_cells=False, bottleneck=2, edge_norm=False)}


@pytest.mark.parametrize("opt", OPTIONS)
@pytest.mark.parametrize("name", SPACES)
def test_forward_backward_reaches_every_arch_parameter(name, opt):
    torch.manual_seed(0)
    space = SPACES[name]
    net = build_supernet(space, OPTIONS[opt])
    out = net(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 4)
    out.square().sum().backward()
    for p in net.arch_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    space.check(net.genotype())


def _mixed_cells(net):
    return [c for c in net.modules() if isinstance(c, SearchCell)]


def test_weight_sharing_keeps_one_module_per_source_and_op():
    space = SPACES["darts"]
    shared = build_supernet(space, SupernetOptions(bottleneck=1, derived_cells=False))
    alone = build_supernet(space, DARTS_OPTIONS)
    n_ops = len([o for o in space.ops if o != "none"])
    sources = len({s for s, _ in space.edges})
    for a, b in zip(_mixed_cells(shared), _mixed_cells(alone)):
        assert len(a.sets) == sources and len(b.sets) == len(space.edges)
        assert all(len(s.ops) == n_ops for s in a.sets.values())
    assert sum(p.numel() for p in shared.weight_parameters()) < sum(p.numel() for p in alone.weight_parameters())


def test_bottleneck_runs_the_ops_on_a_share_of_the_channels():
    space = SPACES["nb201"]
    net = build_supernet(space, SupernetOptions(bottleneck=4))
    conv = net.layers[0].sets["0"].ops["nor_conv_3x3"][1]
    assert conv.in_channels == conv.out_channels == space.C // 4
    with pytest.raises(SpaceError, match="divide"):
        build_supernet(create_space("nb201", C=6, N=1, input_size=8), SupernetOptions(bottleneck=4))


def test_derived_cells_search_one_cell_per_type_and_compute_only_the_derived_ops():
    space = SPACES["darts"]
    net = build_supernet(space, DCA_OPTIONS)
    types = net.types
    assert [i for i, s in enumerate(net.searched) if s] == [types.index("normal"), types.index("reduce")]
    # a derived cell computes at most 2 ops per node (one per kept edge), a mixed one all of them
    derived = [c for c, s in zip(net.cells, net.searched) if not s][0]
    ran = []
    for s in derived.sets.values():
        s.register_forward_hook(lambda m, i, o, r=ran: r.append(len(o)))
    net(torch.randn(2, 1, 8, 8))
    assert 0 < sum(ran) <= 2 * space.steps


def test_darts_derivation_keeps_the_two_strongest_edges_with_their_best_real_op():
    space = SPACES["darts"]
    ops = space.ops
    w = torch.full((len(space.edges), len(ops)), 0.01)
    w[:, ops.index("none")] = 0.9  # none is ignored by the derivation
    pick = {(0, 2): "sep_conv_3x3", (1, 2): "skip_connect", (0, 3): "max_pool_3x3", (2, 3): "dil_conv_5x5",
            (1, 4): "sep_conv_5x5", (3, 4): "avg_pool_3x3", (2, 5): "dil_conv_3x3", (4, 5): "skip_connect"}
    for e, (s, d) in enumerate(space.edges):
        if (s, d) in pick:
            w[e, ops.index(pick[(s, d)])] = 0.5
    g = derive_genotype(space, {"normal": w, "reduce": w})
    want = tuple((op, s) for (s, d), op in sorted(pick.items(), key=lambda kv: (kv[0][1], kv[0][0])))
    assert isinstance(g, Genotype) and g.normal == want and g.reduce == want


def test_nb201_derivation_is_the_argmax_none_included():
    space = SPACES["nb201"]
    w = torch.zeros(6, len(space.ops))
    want = ("none", "nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "none")
    for e, op in enumerate(want):
        w[e, space.ops.index(op)] = 1.0
    assert derive_genotype(space, {"cell": w}) == NB201Genotype(want)


def test_nb201_derivation_never_cuts_the_output_off():
    """A cell whose 'none' edges disconnect output from input predicts a constant: never derive it."""
    import torch

    from hilnas.searchers.cost import _nb201_connected
    from hilnas.searchers.spaces import create_space
    from hilnas.searchers.supernet import derive_genotype

    space = create_space("nb201", C=4, N=1, input_size=8)
    w = torch.full((6, len(space.ops)), 0.05)
    w[:, space.ops.index("none")] = 0.8      # every edge prefers none: argmax is cut off
    w[3, space.ops.index("nor_conv_3x3")] = 0.7  # edge 0->3 is the best way to stay connected
    g = derive_genotype(space, {"cell": w})
    assert _nb201_connected(g.ops)
    assert g.ops == ("none", "none", "none", "nor_conv_3x3", "none", "none")
    w[3, space.ops.index("none")] = 0.1      # ... unless the argmax cell itself is connected
    w[3, space.ops.index("nor_conv_3x3")] = 0.9
    assert derive_genotype(space, {"cell": w}).ops == g.ops
