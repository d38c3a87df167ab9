"""The self-consuming loop for a batch of cheap runs, advanced together generation by generation.

The per-run :class:`madlab.engine.loop.Loop` step, vectorised across B runs that share everything but
their seed and sampling bias (:func:`batch_key`): the same plans, the same derive_seed streams,
the same fits, samples and metrics, on (B, n, d) stacks. Slot i of the batch is run i; its
numbers are the ones the per-run Loop computes (tests/test_batched.py checks every scheme) and
never depend on the other slots.

Accumulating schemes (``accumulate``, ``fixed-real`` with ``accumulate_synthetic``) fit from
pooled sufficient statistics when the family has them (exact up to rounding), so a generation
costs O(n d^2) however long the pool has grown; the other schemes fit on materialised training
sets, bit for bit as the per-run loop does.

A batch may advance only some slots at a generation (``step(t, slots)``): after a resume where
runs stopped at different generations, or once a run has failed (it stays frozen at its last
good generation, the others go on).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from madlab.engine.batched.metrics import BatchedLowDimEvaluator
from madlab.engine.batched.plan import batch_key
from madlab.engine.batched.seeds import derive_seeds
from madlab.metrics import reference_set, reference_source
from madlab.metrics.memorisation import METRICS as MEMORISATION
from madlab.plugins.batched import PerRunGenerators, batched_family
from madlab.schema.config import RunConfig, eval_size
from madlab.schema.schemes import history_needed, plan, pool_size, pooled
from madlab.specs import make_components


@dataclass
class GenerationResult:
    """What one step of a batch produced, for the slots it advanced (rows aligned with ``slots``)."""

    generation: int
    slots: np.ndarray
    metrics: dict[str, np.ndarray]
    provenance: list[dict]
    failures: dict[int, str]  # slot -> message (a failed slot has NaN metrics)
    samples: np.ndarray       # (len(slots), n_synthetic, d): the generation's stored samples
    seconds: dict[str, float] = field(default_factory=dict)
    #: generation 1 only: the metrics of a second real sample (the report's real-vs-real reference)
    real_vs_real: dict[str, np.ndarray] | None = None

    def record(self, j: int, metadata: dict) -> dict:
        """Slot row j as the per-run loop's DONE record (metrics, provenance, metadata)."""
        metadata = dict(metadata)
        if self.real_vs_real is not None:
            metadata["real_vs_real"] = {k: float(v[j]) for k, v in self.real_vs_real.items()}
        return {"generation": self.generation, "metrics": {k: float(v[j]) for k, v in self.metrics.items()},
                "provenance": self.provenance[j], "metadata": metadata}


class BatchLoop:
    """Advances B runs of one batch key; holds what later generations need (samples, statistics)."""

    def __init__(self, configs: list[RunConfig]):
        if not configs:
            raise ValueError("an empty batch")
        keys = {batch_key(c) for c in configs}
        if len(keys) != 1 or None in keys:
            raise ValueError("a batch holds cheap vector runs that differ only in seed and bias")
        self.configs = configs
        first = configs[0]
        self.loop = first.loop
        self.dataset, self.generator_cls, self.generator_params = make_components(first)
        self.size = len(configs)
        self.seeds = [c.seed for c in configs]
        self.bias = np.array([c.loop.bias for c in configs], dtype=np.float64)
        self.n_eval = eval_size(first)
        self.names = first.metrics.names
        family = batched_family(self.generator_cls)
        kwargs = {"data_shape": self.dataset.shape, "size": self.size, "num_classes": self.dataset.num_classes}
        self.model = (family(self.generator_params, **kwargs) if family is not None
                      else PerRunGenerators(self.generator_cls, self.generator_params, **kwargs))
        # the memorisation metrics score each generation's training set, so it is materialised
        self.use_statistics = (pooled(self.loop) and self.model.has_statistics
                               and not set(self.names or ()) & set(MEMORISATION))
        self.done = np.zeros(self.size, dtype=np.int64)
        self.failed = np.zeros(self.size, dtype=bool)
        self.advancing = False  # see _advance
        self.history: dict[int, np.ndarray] = {}  # generation -> (B, n_synthetic, d)
        self.states: list[dict | None] = [None] * self.size  # warm start (per-run fallback) only
        self.pool = self.model.empty_statistics() if self.use_statistics else None
        #: accumulate-subsample: every row a later generation may draw, in pool order
        self.pool_rows = (np.empty((self.size, pool_size(self.loop))
                                   + tuple(self.dataset.shape)) if self.loop.scheme == "accumulate-subsample" else None)
        self._real: dict[tuple[int, int], np.ndarray] = {}
        self._evaluator = None

    # ------------------------------------------------------------------ data
    def real(self, offset: int, n: int) -> np.ndarray:
        """(B, n, d): rows [offset, offset + n) of every run's real stream."""
        key = (offset, n)
        if key not in self._real:
            self._real = {k: v for k, v in self._real.items() if k[0] == 0}
            self._real[key] = np.stack([np.asarray(self.dataset.draw(n, seed=s, offset=offset).x)
                                        for s in derive_seeds(self.seeds, "data")])
        return self._real[key]

    @property
    def evaluator(self) -> BatchedLowDimEvaluator:
        if self._evaluator is None:
            metrics = self.configs[0].metrics
            real_eval = np.stack([np.asarray(reference_set(self.dataset, metrics, self.n_eval, seed=s).x)
                                  for s in derive_seeds(self.seeds, "eval")])
            self._evaluator = BatchedLowDimEvaluator(self.dataset, metrics, real_eval)
            self._evaluator.metadata["reference"] = reference_source(self.dataset, metrics)
        return self._evaluator

    def training_sets(self, t: int, slots: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """(A, N, d) training sets (rows in the per-run loop's order) and their provenance."""
        if self.loop.scheme == "accumulate-subsample" and t > 1:
            return self._subsample(t, slots)
        training_plan = plan(self.loop, t)  # the same for every run: it depends on the seed only when subsampling
        pick = (lambda rows: rows) if self._every(slots) else (lambda rows: rows[slots])  # views, not copies
        blocks = [pick(self.real(p.offset, p.n) if p.source == "real" else self.history[p.source][:, :p.n])
                  for p in training_plan.parts]
        train = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
        return train, [training_plan.provenance()] * len(slots)

    def _subsample(self, t: int, slots: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """madlab.schema.schemes' accumulate-subsample plan, vectorised: the pool (the fixed real rows, then
        each generation's samples) is one (B, rows, d) array, so a run's training set is one gather
        of the sorted rows its own subsample stream chose."""
        loop = self.loop
        size, total = loop.train_size or loop.n_real, loop.n_real + (t - 1) * loop.n_synthetic
        if total <= size:
            chosen = np.broadcast_to(np.arange(total), (len(slots), total))
        else:
            chosen = np.stack([np.sort(np.random.default_rng(s).choice(total, size=size, replace=False))
                               for s in derive_seeds(np.asarray(self.seeds)[slots], "subsample", t)])
        train = self.pool_rows[slots[:, None], chosen]
        bounds = np.array([loop.n_real + g * loop.n_synthetic for g in range(t)])  # part ends: real, 1, ..., t-1
        part = np.searchsorted(bounds, chosen, side="right")
        counts = np.bincount((part + t * np.arange(len(slots))[:, None]).ravel(), minlength=t * len(slots))
        provenance = [{"n_train_real": int(row[0]), "n_train_synthetic": int(row[1:].sum()),  # as Plan.provenance()
                       "synthetic_from": ",".join(str(g) for g in np.flatnonzero(row[1:]) + 1)}
                      for row in counts.reshape(len(slots), t)]
        return train, provenance

    def _every(self, slots: np.ndarray) -> bool:
        """Whether ``slots`` is every slot in order (the usual step): whole arrays then serve as they are."""
        return len(slots) == self.size and bool((slots == np.arange(self.size)).all())

    def history_needed(self) -> int:
        loop = self.loop
        if self.use_statistics or self.pool_rows is not None:
            return 1
        return history_needed(loop)

    # ------------------------------------------------------------------ the step
    def step(self, t: int, slots=None) -> GenerationResult:
        """Compute generation t for ``slots`` (default: every live slot whose next generation is t)."""
        loop = self.loop
        if slots is None:
            slots = np.flatnonzero((self.done == t - 1) & ~self.failed)
        slots = np.asarray(slots, dtype=np.int64)
        clock = time.perf_counter()
        seeds = np.asarray(self.seeds)[slots]
        # the Gaussian fit draws nothing: only a per-run fallback is handed its fit seeds
        fit_seeds = derive_seeds(seeds, "fit", t) if isinstance(self.model, PerRunGenerators) else []
        warm = [self.states[s] for s in slots] if loop.warm_start and t > 1 else None
        train = None
        if self.use_statistics and t > 1:
            provenance = [plan(loop, t).provenance()] * len(slots)
            t_data = time.perf_counter()
            self.model.fit_statistics(self.pool.take(slots), slots)
        else:
            train, provenance = self.training_sets(t, slots)
            t_data = time.perf_counter()
            self.model.fit(train, slots, fit_seeds, warm)
        t_fit = time.perf_counter()
        samples = self.model.sample(max(loop.n_synthetic, self.n_eval), slots, self.bias[slots],
                                    derive_seeds(seeds, "sample", t))
        finite = np.isfinite(samples.reshape(len(slots), -1)).all(1)
        failures = {int(s): f"RunFailed: generation {t}: the generator produced non-finite samples"
                    for s, ok in zip(slots, finite) if not ok}
        t_sample = time.perf_counter()
        scored = samples if finite.all() else np.where(finite[:, None, None], samples, 0.0)  # no copy when finite
        metrics = self._metrics(scored[:, :self.n_eval], slots, train)
        for name in metrics:
            metrics[name][~finite] = np.nan
        real_vs_real = self._real_vs_real(slots, train) if t == 1 else None
        t_metrics = time.perf_counter()
        stored = samples[:, :loop.n_synthetic]
        self._advance(t, slots[finite], stored[finite])
        self.failed[list(failures)] = True
        return GenerationResult(t, slots, metrics, provenance, failures, stored,
                                {"data": t_data - clock, "fit": t_fit - t_data, "sample": t_sample - t_fit,
                                 "metrics": t_metrics - t_sample}, real_vs_real)

    def _real_vs_real(self, slots: np.ndarray, train: np.ndarray | None) -> dict[str, np.ndarray]:
        """As the per-run loop: a second real sample (``real_vs_real_set``) scored like a generation's samples (closed-form
        W2 of the Gaussian fitted to it where the generator's W2 is closed-form; no model metrics)."""
        seeds = np.asarray(self.seeds)[slots]
        real = np.stack([np.asarray(self.dataset.real_vs_real_set(self.n_eval, seed=s, reference_seed=r)[0].x,
                                    dtype=np.float64)
                         for s, r in zip(derive_seeds(seeds, "eval", 1), derive_seeds(seeds, "eval"))])
        gaussian = None
        if self.model.sampling_gaussian(slots, self.bias[slots]) is not None:
            gaussian = (real.mean(1), np.stack([np.atleast_2d(np.cov(x, rowvar=False)) for x in real]))
        scores = self.evaluator(real, slots, sampling_gaussian=gaussian, train=train)
        if self.names is not None:
            scores = {k: v for k, v in scores.items() if k in self.names}
        return {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}

    def _advance(self, t: int, slots: np.ndarray, stored: np.ndarray) -> None:
        """Record generation t of the slots that succeeded: samples, statistics, state.

        ``advancing`` is True while the batch's state is half updated (a checkpoint then would
        double-count generation t on resume)."""
        if len(slots) == 0:
            return
        self.advancing = True
        self._advance_slots(t, slots, stored)
        self.advancing = False

    def _advance_slots(self, t: int, slots: np.ndarray, stored: np.ndarray) -> None:
        if self.pool_rows is not None:
            loop = self.loop
            if t == 1:
                self.pool_rows[slots, :loop.n_real] = self.real(0, loop.n_real)[slots]
            if t < loop.generations:
                start = loop.n_real + (t - 1) * loop.n_synthetic
                self.pool_rows[slots, start:start + loop.n_synthetic] = stored
        if t not in self.history and self._every(slots):
            self.history[t] = stored  # every slot at once (the usual case): no copy
        else:
            if t not in self.history:
                self.history[t] = np.zeros((self.size,) + stored.shape[1:])
            self.history[t][slots] = stored
        if self.use_statistics:
            if t == 1:
                self.pool.put(slots, self.model.statistics(self.real(0, self.loop.n_real)[slots]))
            self.pool.put(slots, self.pool.take(slots).combine(self.model.statistics(stored)))
        if self.loop.warm_start:
            for s, state in zip(slots, self.model.state_dicts(slots)):
                self.states[s] = state
        self.done[slots] = t
        keep = self.history_needed()
        unfinished = self.done[self.done < self.loop.generations]  # failed slots too: a rerun retries them
        oldest = (unfinished.min() if len(unfinished) else t) - keep + 1
        for g in [g for g in self.history if g < oldest]:
            del self.history[g]

    def _metrics(self, fake: np.ndarray, slots: np.ndarray, train: np.ndarray | None = None) -> dict[str, np.ndarray]:
        scores = self.evaluator(fake, slots, sampling_gaussian=self.model.sampling_gaussian(slots, self.bias[slots]),
                                train=train)
        scores.update(self.model.model_metrics(self.dataset, slots))
        if self.names is not None:
            scores = {k: v for k, v in scores.items() if k in self.names}
        return {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}

    def run(self, until: int | None = None, on_generation=None) -> None:
        """Advance every live slot to ``until`` (default: the last generation)."""
        last = min(until or self.loop.generations, self.loop.generations)
        while True:
            live = ~self.failed & (self.done < last)
            if not live.any():
                return
            t = int(self.done[live].min()) + 1
            result = self.step(t, np.flatnonzero(live & (self.done == t - 1)))
            if on_generation is not None:
                on_generation(result)
