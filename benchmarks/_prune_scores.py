"""Test-split scores of pruned networks, shared by the pruning benchmarks (``bench_prune``, ``bench_prune_matched``).

Every network is scored alike: the pre-trained weights of the kept parts, BatchNorm statistics re-estimated on the
same training batches (``prune.gates.recalibrate``), no fine-tuning; ``tuned_correct`` adds the brief fine-tune both
sides of a comparison get alike (``prune.finetune``, the same epochs, data order, optimiser and seed).
"""
from __future__ import annotations


class PrunedScores:
    """Which test images each pruned network classifies right, cached per pattern."""

    def __init__(self, net, loaders, calib: list, tune=None):
        self.net, self.loaders, self.calib, self.tune = net, loaders, calib, tune
        self._plain: dict = {}
        self._tuned: dict = {}

    def _right(self, m):
        import torch

        with torch.no_grad():   # the test loader does not shuffle: one boolean per image, in order
            return torch.cat([m(x).argmax(1) == y for x, y in self.loaders.test])

    def correct(self, pattern):
        """``pattern``'s right answers, its BatchNorm statistics re-estimated."""
        from hilnas.searchers.prune.gates import recalibrate

        if pattern not in self._plain:
            self._plain[pattern] = self._right(recalibrate(self.net.prune(pattern), self.calib))
        return self._plain[pattern]

    def accuracy(self, pattern) -> float:
        return float(self.correct(pattern).float().mean())

    def tuned_correct(self, pattern):
        """``correct`` after the fine-tune (``tune``, a ``FinetuneConfig``) from the re-calibrated network."""
        from hilnas.searchers.prune.finetune import finetune
        from hilnas.searchers.prune.gates import recalibrate

        if self.tune is None:
            raise ValueError("no fine-tune configured (PrunedScores(tune=FinetuneConfig(...)))")
        if pattern not in self._tuned:
            m = recalibrate(self.net.prune(pattern), self.calib)
            finetune(m, self.loaders, self.tune)
            self._tuned[pattern] = self._right(m)
        return self._tuned[pattern]

    def tuned_accuracy(self, pattern) -> float:
        return float(self.tuned_correct(pattern).float().mean())

    def noise(self, a, b, tuned: bool = False) -> dict:
        """Binomial standard errors (points) on the test images: each accuracy's, and the difference's, unpaired
        (independent samples) and paired (the same images: from the images the two networks disagree on)."""
        of = self.tuned_correct if tuned else self.correct
        ca, cb = of(a), of(b)
        n = len(ca)
        se = [100 * (p * (1 - p) / n) ** 0.5 for p in (float(ca.float().mean()), float(cb.float().mean()))]
        only_a, only_b = int((ca & ~cb).sum()), int((cb & ~ca).sum())
        return {"test_images": n, "se_member": se[0], "se_fixed": se[1],
                "se_diff_unpaired": (se[0] ** 2 + se[1] ** 2) ** 0.5,
                "se_diff_paired": 100 * max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0) ** 0.5 / n,
                "disagree": [only_a, only_b]}
