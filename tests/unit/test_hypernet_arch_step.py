"""The architecture step on the networks the weight steps train (``arch_step="straight-through"``, issue 12 item 5).

With single-path weight steps ("uniform", "sandwich") the weights only ever ran one-hot cells; the relaxed
architecture step judges a softmax mixture of them in the searched cell instead. ``ValidSupernet.sampled`` draws one
op per edge from the op weights and runs that discrete cell everywhere, with the straight-through gradient to the
op weights.
"""
from __future__ import annotations

import pytest
import torch

from hilnas.searchers.cost import _nb201_connected
from hilnas.searchers.hypernet import HypernetConfig, ValidSupernet
from testmodels import tiny_space

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _arch(sn: ValidSupernet, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"alphas.cell": logits}


def test_a_sampled_cell_runs_everywhere_one_hot_and_the_gradient_reaches_the_op_weights():
    space = tiny_space("nb201")
    torch.manual_seed(0)
    sn = ValidSupernet(space)
    logits = torch.zeros(len(space.edges), len(space.ops), requires_grad=True)
    rng = torch.Generator().manual_seed(0)
    cells = set()
    for _ in range(12):
        with sn.using(_arch(sn, logits)), sn.sampled(rng):
            w = sn.op_weights()["cell"]
            assert torch.equal(w.detach(), torch.nn.functional.one_hot(w.detach().argmax(1), len(space.ops)).float())
            ops = tuple(space.ops[int(i)] for i in w.detach().argmax(1))
            assert _nb201_connected(ops)   # never a cut-off cell
            derived = sn.choices()["cell"]   # the derived cells run the same drawn cell
            assert derived == [(e, space.ops.index(op)) for e, op in enumerate(ops) if op != "none"]
            cells.add(ops)
            out = sn(torch.randn(4, *space.input_shape[-3:]))
        out.square().mean().backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0
        logits.grad = None
    assert len(cells) > 6   # drawn afresh, not the argmax
    with sn.using(_arch(sn, logits)):   # outside ``sampled``: the soft op weights again
        assert sn.sample is None and not torch.equal(sn.op_weights()["cell"].max(1).values, torch.ones(len(space.edges)))


def test_an_unknown_arch_step_is_refused():
    with pytest.raises(ValueError, match="'relaxed' or 'straight-through'"):
        HypernetConfig(arch_step="gumbel")
