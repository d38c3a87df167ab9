"""``verify``: keep what an imperfect verifier accepts (Feng et al. 2024; Yi et al., ICLR 2026)."""
from __future__ import annotations

from functools import cached_property

import numpy as np
from pydantic import Field

from madlab.core.errors import ConfigError
from madlab.core.samples import Samples
from madlab.curation.rewards import check_lenet_images, lenet_log_probs
from madlab.plugins.curator import Curated, Curator, CuratorParams

#: the verifier's own reference stream: fixed by the dataset alone, independent of every run's draws
_REFERENCE_SEED = 0x5EED_0F_0E_1F


class Verify(Curator):
    """Verifier filtering: keep a candidate iff an imperfect verifier accepts it.

    The ideal verdict is, for vector data, log p(x) ≥ the ``quantile``-quantile of log p under the
    true distribution (a sample in the least likely ``quantile`` of the real mass is "wrong"), and for
    images, LeNet confidence ≥ ``threshold`` (and, for class-conditional samples, agreement of the
    classifier with the sampled label). The verifier errs independently per candidate: a wrong
    candidate is accepted with probability ``false_accept``, a right one rejected with probability
    ``false_reject``. The kept samples are the first ``n_keep`` accepted, in candidate order.
    The score reported as reward is log p(x) (vectors) or the classifier's confidence (images).
    """

    name = "verify"
    data_kinds = frozenset({"vector", "image"})
    rejects = True

    class Params(CuratorParams):
        quantile: float | None = Field(None, gt=0.0, lt=1.0, description="vector data (default 0.1)")
        threshold: float | None = Field(None, ge=0.0, le=1.0, description="images: confidence τ (default 0.9)")
        agree_label: bool = Field(True, description="images with labels: the classifier must agree")
        false_accept: float = Field(0.0, ge=0.0, le=1.0)
        false_reject: float = Field(0.0, ge=0.0, lt=1.0)
        reference_size: int = Field(20_000, ge=100, description="true draws that fix the density quantile")

    @classmethod
    def check(cls, params, dataset) -> None:
        if dataset.kind == "vector":
            if params.threshold is not None:
                raise ConfigError("loop.curation.threshold: the confidence threshold is for image data; "
                                  "vector data uses quantile")
            if not dataset.knows_density:
                raise ConfigError(f"loop.curation.name: verify on vector data needs a dataset that knows its "
                                  f"density (gaussian, gmm25, rosenbrock), not {dataset.name!r}")
        else:
            if params.quantile is not None:
                raise ConfigError("loop.curation.quantile: the density quantile is for vector data; "
                                  "images use threshold")
            check_lenet_images(dataset, "loop.curation")

    @cached_property
    def log_density_threshold(self) -> float:
        """The ``quantile``-quantile of log p(X), X ~ the true distribution (Monte Carlo)."""
        q = self.params.quantile if self.params.quantile is not None else 0.1
        reference = self.dataset.draw(self.params.reference_size, seed=_REFERENCE_SEED)
        return float(np.quantile(self.dataset.log_density(reference.x), q))

    def verdicts(self, candidates: Samples) -> tuple[np.ndarray, np.ndarray]:
        """(ideal verdict, score) per candidate, before the verifier's errors."""
        if self.dataset.kind == "vector":
            score = self.dataset.log_density(np.asarray(candidates.x, dtype=np.float64))
            return score >= self.log_density_threshold, score
        logp = lenet_log_probs(candidates.x, self.device)
        score = np.exp(logp.max(1))
        tau = self.params.threshold if self.params.threshold is not None else 0.9
        right = score >= tau
        if self.params.agree_label and candidates.y is not None:
            right &= logp.argmax(1) == candidates.y
        return right, score

    def curate(self, candidates: Samples, n_keep: int, *, real: Samples, seed: int) -> Curated:
        right, score = self.verdicts(candidates)
        u = np.random.default_rng(seed).random(len(candidates))
        accepted = np.where(right, u >= self.params.false_reject, u < self.params.false_accept)
        index = np.flatnonzero(accepted)[:n_keep]
        examined = int(index[-1]) + 1 if len(index) == n_keep else len(candidates)
        after = float(score[index].mean()) if len(index) else None
        return Curated(candidates.take(index), index, float(score[:examined].mean()), after, examined=examined)
