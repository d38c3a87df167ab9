"""The floor for the Gaussian sweeps: a bare, batched numpy/torch loop computing madlab's metrics.

No madlab import, no files, no configs: B runs as (B, n, d) stacks, each run with its own
random stream, fitted (sample mean, unbiased covariance; the accumulate schemes from pooled
sufficient statistics), sampled N(mu, λΣ) and scored every generation with the same metrics
madlab records for the Gaussian generator on N(0, I_d):

* w2 in closed form (stacked eigendecompositions), trace_cov, mean_shift;
* precision, recall, density, coverage (k-NN balls, k = 5) against a per-run real set of n rows;
* Vendi with an RBF kernel (bandwidth: the median pairwise distance of the real set).

It is what a researcher would write by hand for one sweep; the benchmarks compare ``madlab run``
and madlab's batched engine against it in the same invocation. ``metrics`` picks a subset
(the Kazdan grid harness times each metric separately).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.distance import pdist

ALL = ("w2", "trace_cov", "mean_shift", "prdc", "vendi")


def _radii(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.from_numpy(np.partition(torch.cdist(x, x).numpy(), k, axis=2)[..., k])


def _vendi(x: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(2)
    kernel = np.exp(-np.clip(sq[:, :, None] + sq[:, None, :] - 2 * x @ x.transpose(0, 2, 1), 0, None)
                    / (2 * bandwidth**2)[:, None, None]) / x.shape[1]
    p = np.clip(np.linalg.eigvalsh(kernel), 0, None)
    p = np.where(p > 1e-12, p, 0)
    p = p / p.sum(1, keepdims=True)
    return np.exp(-(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(1))


def _metrics(real: torch.Tensor, radii: torch.Tensor, bandwidth, mean, cov, fake: np.ndarray, k: int,
             wanted) -> dict:
    out = {}
    d = mean.shape[1]
    if "w2" in wanted:  # reference N(0, I): W2^2 = |mu|^2 + tr Σ + d - 2 tr Σ^1/2
        w = np.linalg.eigvalsh(cov)
        out["w2"] = np.sqrt(np.clip((mean**2).sum(1) + w.sum(1) + d - 2 * np.sqrt(np.clip(w, 0, None)).sum(1), 0, None))
    if "trace_cov" in wanted:
        out["trace_cov"] = np.trace(cov, axis1=1, axis2=2)
    if "mean_shift" in wanted:
        out["mean_shift"] = np.linalg.norm(mean, axis=1)
    if "prdc" in wanted:
        f = torch.from_numpy(fake)
        f_radii = _radii(f, k)
        dist = torch.cdist(real, f)
        r = radii[:, :, None]
        out["precision"] = (dist <= r).any(1).double().mean(1).numpy()
        out["density"] = (dist < r).sum(1).double().mean(1).numpy() / k
        out["recall"] = (dist <= f_radii[:, None, :]).any(2).double().mean(1).numpy()
        out["coverage"] = (dist.min(2).values < r[..., 0]).double().mean(1).numpy()
    if "vendi" in wanted:
        out["vendi"] = _vendi(fake, bandwidth)
    return out


def bare_sweep(runs: int, *, dim: int, n: int, generations: int, scheme: str = "fully-synthetic",
               k: int = 5, bias: float = 1.0, metrics=ALL, chunk: int | None = None, seed: int = 0) -> None:
    """Run ``runs`` Gaussian loops (n real, n synthetic per generation) to ``generations``.

    Scores n samples per generation. ``chunk`` runs at a time bound the memory (the
    accumulate-subsample pool grows by n rows per generation)."""
    chunk = chunk or runs
    for start in range(0, runs, chunk):
        _bare_chunk(range(start, min(runs, start + chunk)), dim, n, generations, scheme, k, bias, set(metrics), seed)


def _bare_chunk(seeds, dim, n, generations, scheme, k, bias, wanted, seed):
    rngs = [np.random.default_rng([seed, s]) for s in seeds]
    b = len(rngs)
    draw = lambda m: np.stack([r.standard_normal((m, dim)) for r in rngs])  # noqa: E731
    real_train, real_eval = draw(n), draw(n)
    real_t = torch.from_numpy(real_eval)
    radii = _radii(real_t, k) if "prdc" in wanted else None
    bandwidth = np.array([np.median(pdist(r)) for r in real_eval]) if "vendi" in wanted else None
    train = real_train
    pool = np.empty((b, n * generations, dim)) if scheme == "accumulate-subsample" else None
    if pool is not None:
        pool[:, :n] = real_train
    count, pooled_mean, scatter = None, None, None
    for t in range(1, generations + 1):
        if scheme == "accumulate" and t > 1:
            mean, cov = pooled_mean, scatter / (count - 1)[:, None, None]
        else:
            mean = train.mean(1)
            c = train - mean[:, None]
            cov = np.einsum("bni,bnj->bij", c, c) / (train.shape[1] - 1)
        w, v = np.linalg.eigh(bias * cov)
        fake = mean[:, None] + draw(n) @ (v * np.sqrt(np.clip(w, 0, None))[:, None, :]).transpose(0, 2, 1)
        _metrics(real_t, radii, bandwidth, mean, bias * cov, fake, k, wanted)
        if scheme == "fully-synthetic":
            train = fake
        elif scheme == "accumulate":
            if t == 1:
                count, pooled_mean = np.full(b, float(n)), real_train.mean(1)
                c = real_train - pooled_mean[:, None]
                scatter = np.einsum("bni,bnj->bij", c, c)
            new_mean = fake.mean(1)
            c = fake - new_mean[:, None]
            delta = new_mean - pooled_mean
            total = count + n
            scatter = scatter + np.einsum("bni,bnj->bij", c, c) + delta[:, :, None] * delta[:, None, :] * (count * n / total)[:, None, None]
            pooled_mean = pooled_mean + delta * (n / total)[:, None]
            count = total
        elif scheme == "accumulate-subsample":
            if t < generations:
                pool[:, t * n:(t + 1) * n] = fake
                pick = np.stack([np.sort(r.choice((t + 1) * n, n, replace=False)) for r in rngs])
                train = np.take_along_axis(pool, pick[:, :, None], axis=1)
        else:
            raise ValueError(scheme)
