"""``best-of-k``: Luce choice among K candidates on a reward (Ferbach et al., NeurIPS 2024)."""
from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from madlab.core.samples import Samples
from madlab.curation.rewards import Reward
from madlab.plugins.curator import Curated, Curator, CuratorParams


class BestOfK(Curator):
    """Best-of-K: each kept sample is a Luce choice among K candidates, P(i) ∝ exp(β r(x_i)).

    Ferbach et al. model a user who is shown K samples and keeps one by a Bradley-Terry / Luce
    (multinomial-logit) choice on a reward; iterated retraining on the kept samples then maximises
    the expected reward, and as K grows the kept distribution tends to the tilted p(x) e^{β r(x)} / Z.
    The choice is drawn exactly by the Gumbel-max trick; β = inf keeps the best candidate.
    """

    name = "best-of-k"
    data_kinds = frozenset({"vector", "image"})

    class Params(CuratorParams):
        k: int = Field(4, ge=1, le=4096, description="candidates per kept sample")
        beta: float = Field(1.0, ge=0.0, description="inverse temperature of the Luce choice")
        reward: Reward

    @classmethod
    def check(cls, params, dataset) -> None:
        params.reward.check(dataset, "loop.curation.reward")

    @classmethod
    def candidates_per_kept(cls, params) -> float:
        return float(params.k)

    def curate(self, candidates: Samples, n_keep: int, *, real: Samples, seed: int) -> Curated:
        k = self.params.k
        groups = min(n_keep, len(candidates) // k)
        pool = candidates.take(slice(0, groups * k))
        rewards = self.params.reward.scores(pool, self.dataset, self.device).reshape(groups, k)
        if math.isinf(self.params.beta):
            choice = rewards.argmax(1)
        else:
            gumbel = np.random.default_rng(seed).gumbel(size=rewards.shape)
            choice = (self.params.beta * rewards + gumbel).argmax(1)
        index = np.arange(groups) * k + choice
        return Curated(pool.take(index), index, float(rewards.mean()),
                       float(rewards[np.arange(groups), choice].mean()), examined=groups * k)
