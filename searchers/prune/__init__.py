"""Pruning a pre-trained network with a hypernetwork (seed 004 as written): one run, every budget later.

``gamma(lambda) in {0, 1}^|E|`` gates the modules of a pre-trained ResNet (``spaces/resnet.py``): each
block's branch, and its channel groups; or a pre-trained MobileNet's channel groups (``mobilenet.space``). A hypernetwork maps the trade-off coefficient lambda to the
gates' logits; it is trained on ``L_valid(gamma(lambda)) + lambda T^T gamma`` with ``T`` the modules'
latencies measured on the device (the LUT) and gamma relaxed by Gumbel-Softmax (Algorithm 1).

- ``blocks``: the ResNet's torch building blocks; ``keys``: their op keys (torch-free, registered
  with ``op_key`` when a ResNet space is made); ``network``: the gated network and the real smaller
  network of a gate pattern;
- ``cost``: T(e) per module from any cost model, and the expected cost of relaxed gates;
- ``gates``: the Gumbel-Softmax (binary Concrete) relaxation with a straight-through estimator;
- ``pretrain``: the pre-trained network and its checkpoint (hilnas-saved, ``weights_only``, checked);
- ``sweep``: fixed-lambda pruning, the lambda sweep and Lambda from it and from Theorem 1;
- ``search``: the hypernetwork and Algorithm 1's two phases, and the result (members, curves, budgets);
- ``segments``: phase 2's lambdas in one forward pass, BatchNorm statistics per lambda's share of the batch;
- ``band``: a budget's member within [band x budget, budget] from the hypernetwork's own modes and samples
  when bisection on lambda falls in a gap of the family;
- ``chain``: more candidates near a budget, channel groups dropped one at a time from the dearer bracketing member
  (the least measured rise in cross-entropy per cost saved first);
- ``confirm``: the same with the device in the loop: the best held-out-loss candidates near a latency band
  measured, a member confirmed by two windows inside it (then further tries recentred on the windows; else
  one the loop measured inside a wider band);
- ``score``: the held-out losses that rank those candidates, computed on the pruned networks together;
- ``mobilenet/``: the MobileNet pruned by channel groups (its prunable space, gated and narrower networks,
  the expected cost at the LUT grid's interpolated prices, the exported genotype); Algorithm 1 runs on it
  unchanged (``ModuleCosts.of`` and ``pretrain.gated_network`` ask the space);
- ``io``: saving the trained hypernetwork so later budgets need no training.

This ``__init__`` imports nothing, so the LUT tools can use ``keys`` without torch.
"""
