"""The splitting index of every neuron: the minimum eigenvalue of its splitting matrix, and its eigenvector.

Seed 003 (Wang, Wu et al., after Liu et al. 2019): a neuron ``sigma(theta, x)`` split into two
offspring at ``theta +- eps v`` with half the outgoing weight each changes the loss by

    L(split) - L = eps^2 / 2 * v^T S(theta) v + O(eps^3),   S(theta) = E_x[Phi'(sigma(theta, x)) grad^2_theta sigma(theta, x)],

so the best split moves along the eigenvector of the smallest eigenvalue ``lambda_min(S)``, the
*splitting index*; only a neuron with ``lambda_min < 0`` gains from splitting.

**The neuron.** One output channel j of a layer's splittable unit (``MobileNet.splittable()``:
the stem, or a block's pointwise conv), with the BatchNorm and ReLU that follow it,
``h_p = relu(u_p)``, ``u_p = a_j (theta . x_p) + b_j`` at every position p (a, b: the BN's
eval-mode affine map, ``a = gamma / sqrt(running_var + eps)``; x_p the conv's input patch,
``d = cin k k`` entries). In a depthwise-separable network the channel then goes through the
next block's depthwise filter j, its BN and ReLU, *on its own*: only after that does the next
pointwise conv mix it with other channels through the outgoing weights the split halves. So
that depthwise unit is part of sigma, and

    S_j = sum_p E[g1_p relu''(u1_p) a1^2 x_p x_p^T]  +  sum_q E[g2_q relu''(u2_q) J_q J_q^T],
    J_q = a2 sum_p k(q - p) relu'(u1_p) a1 x_p,

with g1, g2 the loss gradients at the two ReLU outputs (backprop through the real network),
u2 the depthwise BN's output, k the depthwise filter and a2 its BN scale (the last layer feeds
the linear head, which has no second term). Without the second term the index is wrong where it
matters most: in trials on Fashion-MNIST the stem's "best" splits *raised* the loss (+0.12 at
eps = 0.05 where -0.002 was predicted); with it, the predicted and the measured loss change agree
for every layer at small steps (``tests/unit/test_splitting_index.py``).

**ReLU.** relu'' is zero almost everywhere (a delta at 0), so the plain S is identically zero.
We use the smooth surrogate ``softplus_beta(u) = log(1 + exp(beta u)) / beta`` for the second
derivative only: ``relu''(u) ~ beta s(beta u)(1 - s(beta u))`` (s the logistic function), the
logistic density of scale 1/beta. softplus_beta is exactly relu convolved with that density,
so S is the splitting matrix of relu averaged over logistic noise of width 1/beta on the
pre-activation. That is also what a finite split of relu does: offspring at ``u +- delta``
change ``(relu(u + delta) + relu(u - delta)) / 2 - relu(u)`` only where ``|u| < |delta|``, a
band around the kink as wide as the split step. Gradients and relu' come from the real network.

**The step (a deviation, ``IndexConfig.metric``).** The paper's ball ``||theta_i - theta|| <=
eps`` is in raw weight units. BatchNorm makes a layer's function independent of its weight
scale, but not that ball: under weight decay the same eps moves one layer's outputs several
times more than another's, so the plain ``lambda_min(S)`` ranks layers partly by their weight
norms. By default (``metric="output"``) the step is measured by what it changes, the RMS change
of the neuron's BN output, ``||v||_M^2 = v^T M v`` with ``M = a^2 E[x x^T]``, and the index is the
smallest eigenvalue of the pencil (S, M), ``min v^T S v / v^T M v``: a split at ``theta +- tau v``
with ``||v||_M = 1`` changes the loss by ``tau^2 / 2 lambda_min``, in the same units for every
layer. ``metric="weights"`` is the paper's (unit v in weight space, eigenvalues of S).

**Computation.** S is never formed. A batched Lanczos iteration with full re-orthogonalisation
runs on all neurons of a layer at once on ``W S_j W / a_j^2`` (``W = (E[x x^T] + ridge)^-1/2``,
one d x d matrix per layer), with ``S_j y`` as ``X^T (c1_j * X y)`` plus the depthwise term: the
depthwise conv, its adjoint (``conv2d_input``) and two elementwise products, for every neuron
together. With ``lanczos_steps >= d`` the Krylov space is the whole space and the eigenpairs are
exact; ``splitting_matrix`` forms one neuron's d x d matrix, for checks.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hilnas.searchers.spaces.mobilenet.net import MobileNet, Unit


@dataclass(frozen=True)
class IndexConfig:
    """How the splitting indices are estimated."""
    beta: float = 10.0        # softplus surrogate sharpness: the kink band is ~1/beta wide in BN-output units
    batches: int = 4          # training batches the expectation is taken over
    lanczos_steps: int = 40   # Krylov dimension per neuron (exact when >= the neuron's input size d)
    ridge: float = 1e-3       # added to E[x x^T]'s diagonal, times its mean diagonal (inputs that never vary)
    metric: str = "output"    # the split step's norm: "output" (RMS change of the BN output) | "weights" (the paper's)
    seed: int = 0             # Lanczos start vectors

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.batches < 1 or self.lanczos_steps < 1 or self.ridge <= 0:
            raise ValueError("IndexConfig: beta and ridge must be > 0, batches and lanczos_steps >= 1")
        if self.metric not in ("output", "weights"):
            raise ValueError(f"IndexConfig.metric must be 'output' or 'weights', got {self.metric!r}")


@dataclass(frozen=True)
class LayerIndex:
    """The splitting indices of one layer's neurons."""
    layer: int                 # 0 = stem, i = block i
    eigenvalues: torch.Tensor  # (neurons,) lambda_min: the loss change per step^2 / 2 (see IndexConfig.metric)
    directions: torch.Tensor   # (neurons, d) v_min in conv-weight coordinates, unit in the metric; d = cin * k * k

    @property
    def splittable(self) -> torch.Tensor:
        """Indices of the neurons whose split lowers the loss (lambda_min < 0)."""
        import torch
        return torch.nonzero(self.eigenvalues < 0).flatten()


@dataclass(frozen=True)
class DepthwiseTerms:
    """The next block's depthwise unit, through which each neuron passes alone (S's second term)."""
    gate: torch.Tensor         # (N, C, H, W) relu'(u1) a1: d h1 / d (theta . x) at each input position
    c: torch.Tensor            # (N, C, H2, W2) g2 relu''(u2) a2^2, divided by the number of batches
    weight: torch.Tensor       # (C, 1, k, k) the depthwise filters
    stride: int
    padding: int


@dataclass(frozen=True)
class LayerTerms:
    """What S and M of one layer are made of."""
    X: torch.Tensor            # (positions, d) the conv's input patches, over all batches, positions (n, h, w)
    c: torch.Tensor            # (positions, neurons) g1 relu''(u1) a1^2, divided by the number of batches
    a: torch.Tensor            # (neurons,) BN scale gamma / sqrt(running_var + eps)
    depthwise: DepthwiseTerms | None = None  # None for the last layer (it feeds the linear head)

    def gram(self) -> torch.Tensor:
        """E[x x^T] over positions and samples (d, d): M_j = a_j^2 times this."""
        X = self.X.double()
        return X.T @ X / X.shape[0]

    def apply_S(self, Y: torch.Tensor) -> torch.Tensor:
        """S_j y_j for every neuron j at once: (neurons, d) -> (neurons, d), float64."""
        import torch.nn.functional as F
        from torch.nn.grad import conv2d_input

        X = self.X.double()
        Z = X @ Y.T                                    # (positions, neurons): the pre-activation change x_p . y_j
        R = Z * self.c.double()
        dw = self.depthwise
        if dw is not None:
            N, C, H, W = dw.gate.shape
            dh = Z.reshape(N, H, W, C).permute(0, 3, 1, 2) * dw.gate.double()      # change of h1
            k = dw.weight.double()
            du2 = F.conv2d(dh, k, stride=dw.stride, padding=dw.padding, groups=C)  # change of u2 / a2
            back = conv2d_input(dh.shape, k, du2 * dw.c.double(), stride=dw.stride, padding=dw.padding, groups=C)
            R = R + (back * dw.gate.double()).permute(0, 2, 3, 1).reshape(-1, C)
        return R.T @ X


def surrogate_second_derivative(u: torch.Tensor, beta: float) -> torch.Tensor:
    """softplus_beta''(u) = beta s(beta u) (1 - s(beta u)): relu's second derivative, smoothed."""
    import torch
    s = torch.sigmoid(beta * u)
    return beta * s * (1 - s)


def _patches(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """(B, cin, H, W) -> (B * H' * W', cin * k * k): the input each output position sees."""
    import torch.nn.functional as F
    if conv.kernel_size == (1, 1) and conv.stride == (1, 1):
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (B, d, P) -> (B * P, d)


def bn_scale(unit: Unit) -> torch.Tensor:
    """a = gamma / sqrt(running_var + eps): the BN's eval-mode slope per channel."""
    import torch
    bn = unit.bn
    return (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()


def layer_terms(net: MobileNet, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], beta: float, *,
                gradients: bool = True) -> list[LayerTerms]:
    """X, c, a (and the depthwise terms) of every splittable layer; ``gradients=False``: X and a only."""
    import torch
    import torch.nn.functional as F

    units = net.splittable()
    nxt = [b.depthwise for b in net.blocks] + [None]  # the depthwise unit each layer's channels enter
    watched = [u for u in units] + [u for u in nxt if u is not None]
    was_training = net.training
    net.eval()  # BN's running statistics: the fixed affine maps the index assumes
    parts: dict[str, list[list[torch.Tensor]]] = {k: [[] for _ in units] for k in ("X", "c", "gate", "c2")}
    n_batches = 0
    try:
        for x, y in batches:
            inputs, pre, post = {}, {}, {}
            hooks = []
            for i, unit in enumerate(watched):
                hooks.append(unit.conv.register_forward_hook(lambda m, a, o, i=i: inputs.__setitem__(i, a[0])))
                hooks.append(unit.bn.register_forward_hook(lambda m, a, o, i=i: pre.__setitem__(i, o)))
                hooks.append(unit.act.register_forward_hook(lambda m, a, o, i=i: post.__setitem__(i, o)))
            try:
                with torch.set_grad_enabled(gradients):
                    loss = F.cross_entropy(net(x), y)  # mean over the batch: E_x of the seed's formula
            finally:
                for h in hooks:
                    h.remove()
            grads = torch.autograd.grad(loss, [post[i] for i in range(len(watched))]) if gradients else None
            with torch.no_grad():
                for i, unit in enumerate(units):
                    parts["X"][i].append(_patches(unit.conv, inputs[i].detach()))
                    if grads is None:
                        continue
                    a1 = bn_scale(unit)[None, :, None, None]
                    c1 = grads[i] * surrogate_second_derivative(pre[i], beta) * a1 ** 2
                    parts["c"][i].append(c1.permute(0, 2, 3, 1).reshape(-1, c1.shape[1]))
                    if nxt[i] is not None:
                        j = len(units) + i  # the depthwise unit's slot among the watched units
                        a2 = bn_scale(nxt[i])[None, :, None, None]
                        parts["gate"][i].append((pre[i] > 0).to(pre[i].dtype) * a1)
                        parts["c2"][i].append(grads[j] * surrogate_second_derivative(pre[j], beta) * a2 ** 2)
            n_batches += 1
    finally:
        net.train(was_training)
    if not n_batches:
        raise ValueError("the splitting index needs at least one batch of training data")
    out = []
    for i, unit in enumerate(units):
        c = torch.cat(parts["c"][i]) / n_batches if parts["c"][i] else torch.zeros(0)
        dw = None
        if parts["gate"][i]:
            conv = nxt[i].conv
            dw = DepthwiseTerms(torch.cat(parts["gate"][i]), torch.cat(parts["c2"][i]) / n_batches,
                                conv.weight.detach(), conv.stride[0], conv.padding[0])
        out.append(LayerTerms(torch.cat(parts["X"][i]), c, bn_scale(unit), dw))
    return out


def inverse_sqrt(G: torch.Tensor, ridge: float) -> torch.Tensor:
    """(G + ridge * mean diag(G) * I)^(-1/2) of a symmetric positive semi-definite (d, d) matrix."""
    import torch
    s, U = torch.linalg.eigh(G)
    floor = ridge * float(torch.diagonal(G).mean().clamp_min(1e-30))
    return (U * (s.clamp_min(0) + floor).rsqrt()) @ U.T


def splitting_matrix(terms: LayerTerms, neuron: int) -> torch.Tensor:
    """One neuron's S (d, d), formed explicitly column by column (for checks and tiny layers)."""
    import torch

    d, n = terms.X.shape[1], terms.a.shape[0]
    cols = []
    for e in torch.eye(d, dtype=torch.float64):
        Y = torch.zeros(n, d, dtype=torch.float64)
        Y[neuron] = e
        cols.append(terms.apply_S(Y)[neuron])
    return torch.stack(cols, dim=1)


def lanczos_min_eig(matvec, n: int, d: int, steps: int, *, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest eigenpair of n symmetric (d, d) operators at once; ``matvec((n, d)) -> (n, d)``.

    Lanczos with full re-orthogonalisation (twice, for float64 round-off) over min(steps, d)
    steps; a breakdown (the Krylov space became invariant) restarts with a fresh orthogonal
    vector, so the tridiagonal matrix stays valid. Returns (eigenvalues (n,), unit vectors (n, d)).
    """
    import torch

    k = min(steps, d)
    gen = torch.Generator().manual_seed(seed)
    Q = torch.zeros(n, k, d, dtype=torch.float64)
    alpha = torch.zeros(n, k, dtype=torch.float64)
    beta = torch.zeros(n, k, dtype=torch.float64)
    q = torch.randn(n, d, generator=gen, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)

    def orthogonalise(w: torch.Tensor, upto: int) -> torch.Tensor:
        for _ in range(2):
            basis = Q[:, :upto]  # (n, upto, d)
            w = w - torch.einsum("nid,ni->nd", basis, torch.einsum("nid,nd->ni", basis, w))
        return w

    for i in range(k):
        Q[:, i] = q
        w = matvec(q)
        alpha[:, i] = (w * q).sum(dim=1)
        w = orthogonalise(w, i + 1)
        if i == k - 1:
            break
        b = w.norm(dim=1)
        broken = b <= 1e-10 * alpha[:, : i + 1].abs().amax(dim=1).clamp_min(1e-300)
        if broken.any():  # restart those neurons with a random vector orthogonal to their basis
            fresh = orthogonalise(torch.randn(n, d, generator=gen, dtype=torch.float64), i + 1)
            w = torch.where(broken[:, None], fresh / fresh.norm(dim=1, keepdim=True), w)
            b = torch.where(broken, torch.zeros_like(b), b)
            q = torch.where(broken[:, None], w, w / b.clamp_min(1e-300)[:, None])
        else:
            q = w / b[:, None]
        beta[:, i] = b
    T = torch.diag_embed(alpha) + torch.diag_embed(beta[:, : k - 1], 1) + torch.diag_embed(beta[:, : k - 1], -1)
    evals, evecs = torch.linalg.eigh(T)  # ascending
    v = torch.einsum("nkd,nk->nd", Q, evecs[:, :, 0])
    return evals[:, 0], v / v.norm(dim=1, keepdim=True)


def layer_index(terms: LayerTerms, layer: int, config: IndexConfig) -> LayerIndex:
    """lambda_min and v_min of every neuron of one layer, in the config's metric.

    "output": Lanczos on ``W S_j W / a_j^2`` (``W = (E[x x^T] + ridge)^(-1/2)``); an eigenvector u
    maps back to ``v = W u / |a_j|``, so ``||v||_M = 1``. "weights": Lanczos on S_j itself.
    """
    if config.metric == "weights":
        evals, vecs = lanczos_min_eig(terms.apply_S, terms.a.shape[0], terms.X.shape[1], config.lanczos_steps,
                                      seed=config.seed + layer)
        return LayerIndex(layer, evals.float(), vecs.float())
    W = inverse_sqrt(terms.gram(), config.ridge)
    a2 = (terms.a.double() ** 2).clamp_min(1e-30)[:, None]
    evals, vecs = lanczos_min_eig(lambda U: terms.apply_S(U @ W) @ W / a2, terms.a.shape[0], terms.X.shape[1],
                                  config.lanczos_steps, seed=config.seed + layer)
    return LayerIndex(layer, evals.float(), ((vecs @ W) / a2.sqrt()).float())


def random_directions(terms: LayerTerms, generator: torch.Generator, config: IndexConfig = IndexConfig()
                      ) -> torch.Tensor:
    """One random direction per neuron (neurons, d), uniform and of unit length in the config's metric."""
    import torch

    U = torch.randn(terms.a.shape[0], terms.X.shape[1], generator=generator, dtype=torch.float64)
    U = U / U.norm(dim=1, keepdim=True)
    if config.metric == "weights":
        return U.float()
    W = inverse_sqrt(terms.gram(), config.ridge)
    return ((U @ W) / terms.a.double().abs().clamp_min(1e-30)[:, None]).float()


def splitting_indices(net: MobileNet, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                      config: IndexConfig = IndexConfig()) -> list[LayerIndex]:
    """The splitting index and direction of every neuron of every layer, over ``batches``."""
    terms = layer_terms(net, batches, config.beta)
    return [layer_index(t, i, config) for i, t in enumerate(terms)]
