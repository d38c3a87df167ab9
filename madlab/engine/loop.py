"""The self-consuming loop: one generation is a pure, idempotent step.

    step(t):  plan(t) -> training set (real rows + earlier generations' samples)
              -> fresh generator (or G_{t-1}'s weights when warm-starting) -> fit
              -> sample n_synthetic (and n_eval) with bias λ -> [loop.curation: select or correct
              the samples that later generations train on, madlab.curation] -> metrics -> publish gen-t

Every random choice is seeded from (run seed, generation, purpose), so a generation computed
twice, in one process or after a crash, gives the same bits. Earlier generations are read from
their published folders, so the step needs nothing from the process that made them.
"""
from __future__ import annotations

import time
import traceback
from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from madlab.core.errors import RunFailed
from madlab.core.image import grid_png, quantise
from madlab.core.samples import Samples
from madlab.core.tokenizer import check_tokens
from madlab.engine.curation_stage import CurationStage, round_seed
from madlab.engine.shared_generation import SharedFirstGeneration
from madlab.metrics import make_evaluator, reference_set, reference_source
from madlab.schema.config import RunConfig, eval_size
from madlab.schema.schemes import Part, Plan, history_needed, plan
from madlab.specs import make_components
from madlab.store.storage import RunStore
from madlab.store.tokenizer_file import store_tokenizer

#: the purposes a run draws random numbers for; each is its own stream (derive_seed)
PURPOSES = {"data": 1, "eval": 2, "fit": 3, "sample": 4, "subsample": 5, "curation": 6, "candidates": 7,
            "publish": 8, "pool": 9,  # publish/pool: an ecosystem's public pool (madlab.engine.ecosystem)
            "sims": 10, "sims_fit": 11}  # loop.sims: the model's own samples, the auxiliary's fine-tuning


def derive_seed(seed: int, purpose: str, generation: int = 0) -> int:
    """A 63-bit seed for one purpose of one generation of a run."""
    state = np.random.SeedSequence([seed, PURPOSES[purpose], generation]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


class Loop:
    """Runs (or resumes) one run's generations into its folder."""

    def __init__(self, config: RunConfig, run_dir, *, device: str = "cpu", cache_dir: str | None = None,
                 fault_hook=None):
        self.config = config
        self.store = RunStore(run_dir)
        self.device = device
        self.cache_dir = cache_dir or self.store.cache_dir
        self.dataset, self.generator_cls, self.generator_params = make_components(config)
        self.image = self.dataset.kind == "image"
        self.tokens = self.dataset.kind == "tokens"
        self.n_eval = eval_size(config)
        self._real: dict[tuple[int, int], Samples] = {}
        self._synthetic: dict[int, Samples] = {}
        self._evaluator = None
        self._fault_hook = fault_hook
        self.curation = None
        if config.loop.curation is not None:
            self.curation = CurationStage(config.loop.curation, self.dataset, device)
        self.shared = SharedFirstGeneration.for_run(config, self.store, self.generator_cls)

    # ------------------------------------------------------------------ data
    def real(self, offset: int, n: int) -> Samples:
        key = (offset, n)
        if key not in self._real:
            self._real = {k: v for k, v in self._real.items() if k[0] == 0}  # keep only the fixed set
            self._real[key] = self.dataset.draw(n, seed=derive_seed(self.config.seed, "data"), offset=offset)
        return self._real[key]

    def synthetic(self, t: int) -> Samples:
        if t not in self._synthetic:
            self._synthetic[t] = self.store.samples(t)
        return self._synthetic[t]

    def plan(self, t: int) -> Plan:
        return plan(self.config.loop, t, subsample_seed=derive_seed(self.config.seed, "subsample", t))

    def training_set(self, training_plan: Plan) -> Samples:
        return Samples.concat([self._materialise(p) for p in training_plan.parts])

    def _materialise(self, part: Part) -> Samples:
        rows = self.real(part.offset, part.n) if part.source == "real" else self.synthetic(part.source).take(slice(0, part.n))
        return rows if part.select is None else rows.take(np.asarray(part.select, dtype=np.int64))

    @property
    def evaluator(self):
        if self._evaluator is None:
            real_eval = reference_set(self.dataset, self.config.metrics, self.n_eval,
                                      seed=derive_seed(self.config.seed, "eval"))
            self._evaluator = make_evaluator(self.dataset, self.config.metrics, real_eval,
                                             cache_dir=self.cache_dir, device=self.device)
            self._evaluator.metadata["reference"] = reference_source(self.dataset, self.config.metrics)
        return self._evaluator

    # ------------------------------------------------------------------ the step
    def step(self, t: int) -> dict:
        """Compute and publish generation t (generation 1 shared with the runs that would compute
        it identically, see :mod:`madlab.engine.shared_generation`); returns its record."""
        if t == 1 and self.shared is not None:
            return self.shared.run(lambda: self._step(1))
        return self._step(t)

    def _step(self, t: int) -> dict:
        loop, seed = self.config.loop, self.config.seed
        clock = time.perf_counter()
        training_plan = self.plan(t)
        train = self.training_set(training_plan)
        generator = self.generator_cls(self.generator_params, data_shape=self.dataset.shape,
                                       num_classes=self.dataset.num_classes, device=self.device,
                                       **({"vocab_size": self.dataset.vocab_size} if self.tokens else {}))
        if loop.warm_start and t > 1:
            generator.load_state_dict(self.store.state(t - 1))
        t_data = time.perf_counter()
        generator.fit(train, seed=derive_seed(seed, "fit", t))
        if loop.sims is not None:
            self._fit_sims(generator, t)
        t_fit = time.perf_counter()
        samples = generator.sample(max(loop.n_synthetic, self.n_eval), bias=loop.bias,
                                   seed=derive_seed(seed, "sample", t))
        samples = self._check(samples, t)
        t_sample = time.perf_counter()
        kept, curated = samples.take(slice(0, loop.n_synthetic)), None
        if self.curation is not None:
            curated = self._curate(generator, training_plan, samples, t)
            kept = curated.kept
        t_curated = time.perf_counter()
        metrics = self._metrics(generator, samples.take(slice(0, self.n_eval)), train=train)  # the model's own samples
        t_metrics = time.perf_counter()
        record = {
            "generation": t,
            "metrics": {**metrics, **(curated.stats if curated else {})},
            "provenance": training_plan.provenance(),
            "metadata": dict(getattr(self.evaluator, "metadata", {})),
            "seconds": {"data": t_data - clock, "fit": t_fit - t_data, "sample": t_sample - t_fit,
                        **(curated.seconds if curated else {}), "metrics": t_metrics - t_curated},
        }
        if t == 1:  # once per run: the report's reference row (what "good" scores), timed as metrics work
            real, shared = self.dataset.real_vs_real_set(self.n_eval, seed=derive_seed(seed, "eval", 1),
                                                         reference_seed=derive_seed(seed, "eval"))
            record["metadata"]["real_vs_real"] = self._metrics(generator, real, real=True, train=train)
            if shared:  # the real data ran out: that many of its rows are also in the reference set
                record["metadata"]["real_vs_real_shared"] = shared
            t_reference = time.perf_counter()
            record["seconds"]["metrics"] += t_reference - t_metrics
            t_metrics = t_reference
        extra = {"grid.png": grid_png(kept.x)} if self.image else {}
        if curated:
            extra.update(curated.files(self.image))
        self.store.publish(t, generator.state_dict(), kept, record, self.image, extra=extra)
        record["seconds"]["publish"] = time.perf_counter() - t_metrics
        self._synthetic[t] = kept
        for old in [g for g in self._synthetic if g < t - history_needed(self.config.loop)]:
            del self._synthetic[old]
        return record

    def _fit_sims(self, generator, t: int) -> None:
        """loop.sims: the auxiliary model of SIMS, fine-tuned on ``sims.size`` samples the fitted model draws
        itself (plain sampler, the loop's bias); later sampling guides away from it (generator.fit_auxiliary)."""
        sims, seed = self.config.loop.sims, self.config.seed
        own = self._check(generator.sample(sims.size, bias=self.config.loop.bias, seed=derive_seed(seed, "sims", t)), t)
        generator.fit_auxiliary(own, omega=sims.omega, steps=sims.steps, seed=derive_seed(seed, "sims_fit", t))

    def _curate(self, generator, training_plan: Plan, samples: Samples, t: int):
        """loop.curation on generation t's samples (madlab.engine.curation_stage); the curator's real
        reference is the real data G_t was trained on, else generation 1's real set."""
        loop, seed = self.config.loop, self.config.seed
        real_parts = [p for p in training_plan.parts if p.source == "real"] or \
            [p for p in self.plan(1).parts if p.source == "real"]
        candidates_seed = derive_seed(seed, "candidates", t)

        def draw(n: int, round_: int) -> Samples:
            return self._check(generator.sample(n, bias=loop.bias, seed=round_seed(candidates_seed, round_)), t)

        return self.curation.run(samples, loop.n_synthetic, draw=draw,
                                 real=Samples.concat([self._materialise(p) for p in real_parts]),
                                 seed=derive_seed(seed, "curation", t), generation=t,
                                 finish=lambda kept: self._check(kept, t))

    def _check(self, samples: Samples, t: int) -> Samples:
        if self.tokens:
            problem = check_tokens(samples.x, self.dataset.vocab_size)
            if problem is not None:
                raise RunFailed(f"generation {t}: the generator produced bad token samples: {problem}")
            return samples
        if not np.isfinite(samples.x).all():
            raise RunFailed(f"generation {t}: the generator produced non-finite samples")
        if self.image:  # generated images become 8-bit pictures, like the real ones
            samples = Samples(quantise(samples.x), samples.y)
        return samples

    def _metrics(self, generator, fake: Samples, real: bool = False, train: Samples | None = None) -> dict[str, float]:
        """Metrics of ``fake`` against the reference set (memorisation metrics also against ``train``, the
        generation's training set); ``real=True`` scores a real set the same way (a closed-form W2 where the
        generator's is: that of the Gaussian fitted to the real set)."""
        if self.image:
            scores = dict(self.evaluator(fake, train=train))
        elif self.tokens:  # perplexity is the model's on held-out text, not the sample's: no real analogue
            scores = dict(self.evaluator(fake, generator=None if real else generator, train=train))
        else:
            gaussian = generator.sampling_gaussian(self.config.loop.bias)
            if real and gaussian is not None:
                x = fake.x.astype(np.float64)
                gaussian = (x.mean(0), np.atleast_2d(np.cov(x, rowvar=False)))
            scores = dict(self.evaluator(fake, sampling_gaussian=gaussian, train=train))
        if not real:
            scores.update(generator.model_metrics(self.dataset))
        scores.update(self.dataset.extra_metrics(fake))
        names = self.config.metrics.names
        if names is not None:
            scores = {k: v for k, v in scores.items() if k in names}
        return {k: float(v) for k, v in scores.items()}

    # ------------------------------------------------------------------ driving
    def run(self, until: int | None = None, on_generation=None) -> int:
        """Run the missing generations up to ``until`` (default: all); returns the last one done.

        A run that fails (any exception but a keyboard interrupt) is recorded in FAILED and
        the exception re-raised as RunFailed; failures are not transient, so a rerun retries.
        """
        last = min(until or self.config.loop.generations, self.config.loop.generations)
        done = self.store.last_done()
        if done < last:
            self.store.clear_failure()
        if self.tokens and done < last:
            store_tokenizer(self.store, self.dataset.tokenizer, resumed=done > 0)
        with compute_threads(self.config.resources.num_cpus):
            self._run(done, last, on_generation)
        return last

    def _run(self, done: int, last: int, on_generation) -> None:
        for t in range(done + 1, last + 1):
            try:
                if self._fault_hook is not None:
                    self._fault_hook(self, t)
                record = self.step(t)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}".strip()
                self.store.mark_failed(t, message if isinstance(exc, RunFailed) else
                                       message + "\n" + traceback.format_exc(limit=3))
                raise RunFailed(message) from exc
            if on_generation is not None:
                on_generation(t, record)


#: the thread counts of the compute_threads blocks entered in this thread of control, innermost last
_THREADS: list[int] = []


@contextmanager
def compute_threads(num_cpus: float):
    """Run with as many BLAS/torch threads as CPUs reserved for the run (Ray's num_cpus).

    More threads than cores is ruinous here: a small eigvalsh or cdist is tens of times slower
    on an oversubscribed machine (benchmarks/README.md, *Threads*). Re-entrant: inside a block of
    the same count it does nothing, so a caller that runs many short steps (an ecosystem's members,
    one generation at a time) sets the limits once instead of rescanning the loaded libraries
    (threadpoolctl: ~8 ms) per step.
    """
    threads = max(1, int(num_cpus))
    if _THREADS and _THREADS[-1] == threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    _THREADS.append(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        _THREADS.pop()
        torch.set_num_threads(previous)
