"""The curation stage of a generation: draw candidates, curate, account, and keep both sides.

The loop calls :meth:`CurationStage.run` after sampling. The first candidates are the samples
the generation drew anyway (so a curated run's model metrics are those of the uncurated run with
the same seed); a curator that needs more (best-of-K, a rejecting verifier) gets further draws of
the same model, seeded from (run seed, generation, "candidates", round). A rejecting curator that
cannot fill ``n_keep`` is retried on a larger pool, up to ``max_oversampling`` candidates per kept
sample; past that the run fails with one line giving the acceptance rate.

Everything the curator saw is published beside the kept samples: ``candidates.npz`` holds the
uncurated candidates (``x`` or ``x_uint8``, ``y``) and, for a selecting curator, ``kept_index``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from madlab.core.errors import RunFailed
from madlab.core.samples import Samples
from madlab.curation.params import make_curator_params
from madlab.plugins.curator import Curator
from madlab.store.storage import decode_samples_and, encode_samples

CANDIDATES = "candidates.npz"


def round_seed(base: int, round_: int) -> int:
    """Seed of the ``round_``-th extra draw of candidates (independent streams per round)."""
    state = np.random.SeedSequence([base, round_]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


@dataclass
class CurationOutcome:
    kept: Samples
    candidates: Samples
    index: np.ndarray | None
    stats: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)

    def files(self, image: bool) -> dict[str, bytes]:
        """``{"candidates.npz": bytes}`` for the generation folder (the sample codec, no pickles)."""
        extra = None if self.index is None else {"kept_index": np.asarray(self.index, dtype=np.int64)}
        return {CANDIDATES: encode_samples(self.candidates, image, extra)}


def load_candidates(gen_dir) -> tuple[Samples, np.ndarray | None]:
    """(uncurated candidates, kept_index or None) of a published curated generation folder."""

    candidates, extra = decode_samples_and(Path(gen_dir, CANDIDATES).read_bytes(), "kept_index")
    return candidates, extra["kept_index"]


class CurationStage:
    """One run's curator, applied to every generation's samples."""

    def __init__(self, section: dict, dataset, device: str = "cpu"):
        cls, params = make_curator_params(section)
        self.curator: Curator = cls(params, dataset=dataset, device=device)
        self.params = params

    def run(self, first: Samples, n_keep: int, *, draw, real: Samples, seed: int, generation: int,
            finish=lambda s: s) -> CurationOutcome:
        """Curate one generation.

        first: the samples already drawn; draw(n, round) -> Samples: more candidates of the same model;
        finish: applied to the curated samples (the loop's 8-bit quantisation of images).
        """
        curator, params = self.curator, self.params
        cap = max(n_keep, int(math.floor(params.max_oversampling * n_keep)))
        need = min(cap, int(math.ceil(type(curator).candidates_per_kept(params) * n_keep)))
        pool, rounds, t_draw, t_curate = first, 0, 0.0, 0.0
        while True:
            if len(pool) < need:
                clock = time.perf_counter()
                parts = [pool]
                while sum(map(len, parts)) < need:
                    parts.append(draw(need - sum(map(len, parts)), rounds))
                    rounds += 1
                pool = Samples.concat(parts)
                t_draw += time.perf_counter() - clock
            offered = pool.take(slice(0, need))
            clock = time.perf_counter()
            result = curator.curate(offered, n_keep, real=real, seed=seed)
            t_curate += time.perf_counter() - clock
            kept = len(result.samples)
            if kept >= n_keep or not type(curator).rejects:
                break
            if need >= cap:
                examined = result.examined or need
                raise RunFailed(f"generation {generation}: curator {curator.name!r} accepted {kept} of {examined} "
                                f"candidates (acceptance rate {kept / examined:.2%}), fewer than the {n_keep} "
                                f"to keep within loop.curation.max_oversampling={params.max_oversampling:g}")
            rate = kept / need
            need = cap if rate == 0 else min(cap, max(2 * need, int(math.ceil(1.2 * n_keep / rate))))
        if kept != n_keep:
            raise RunFailed(f"generation {generation}: curator {curator.name!r} returned {kept} samples, "
                            f"expected {n_keep}")
        examined = result.examined or need
        stats = {"candidates": float(need), "kept": float(kept), "acceptance_rate": kept / examined}
        if result.reward_before is not None:
            stats["reward_before"] = float(result.reward_before)
        if result.reward_after is not None:
            stats["reward_after"] = float(result.reward_after)
        return CurationOutcome(finish(result.samples), offered, result.index, stats,
                               {"candidates": t_draw, "curation": t_curate})
