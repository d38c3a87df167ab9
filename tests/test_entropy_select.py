"""The entropy-select curator (Shi et al. 2025): its incremental greedy equals the naive greedy that
recomputes the k = 1 Kozachenko–Leonenko estimate for every candidate; it raises the kept set's entropy
above an uncurated choice; it runs through the curator door in a loop and resumes."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from madlab.curation.entropy_select import greedy_entropy_selection
from madlab.metrics.memorisation import Reference


def naive_greedy(x: np.ndarray, n_keep: int, seed: int) -> list[int]:
    """The definition: a seeded random first row, then the row maximising the k = 1 KL estimate of the
    kept set with it (at a fixed set size that is the sum of log nearest-other-member distances)."""
    d = cdist(x, x)
    chosen = [int(np.random.default_rng(seed).integers(len(x)))]
    while len(chosen) < n_keep:
        best, best_value = None, -np.inf
        for c in range(len(x)):
            if c in chosen:
                continue
            members = chosen + [c]
            sub = d[np.ix_(members, members)] + np.diag(np.full(len(members), np.inf))
            value = np.log(sub.min(1)).sum()
            if value > best_value:
                best, best_value = c, value
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("dim,seed", [(1, 0), (2, 1), (5, 2)])
def test_incremental_greedy_equals_the_naive_greedy(dim, seed):
    x = np.random.default_rng(seed).standard_normal((60, dim))
    # exact: indices; the two compute the same objective by different sums, and no two candidates' values
    # lie within rounding of each other in these draws (a tie would show as a different index)
    assert greedy_entropy_selection(x, 25, seed).tolist() == naive_greedy(x, 25, seed)


def test_selection_raises_the_entropy_estimate_and_avoids_copies():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal((300, 2)) * 0.3, rng.standard_normal((100, 2)) * 2.0])
    x = np.concatenate([x, x[:100]])  # 100 exact duplicates among the candidates
    index = greedy_entropy_selection(x, 150, seed=4)
    assert len(set(x[index].round(12).view("complex128").ravel())) == 150  # no copy kept while others remain
    kept = Reference.of(x[index], 1).entropy()
    random = [Reference.of(x[np.random.default_rng(s).choice(300, 150, replace=False)], 1).entropy() for s in range(20)]
    assert kept > max(random)


def test_seeded_and_deterministic():
    x = np.random.default_rng(5).standard_normal((80, 3))
    a, b = greedy_entropy_selection(x, 30, 11), greedy_entropy_selection(x, 30, 11)
    assert a.tolist() == b.tolist()  # exact: same path, same seed
    assert greedy_entropy_selection(x, 30, 12)[0] != a[0] or greedy_entropy_selection(x, 30, 13)[0] != a[0]


def test_a_curated_loop_runs_resumes_and_records_the_entropy_gain(tmp_path):
    from test_curation_loop import curated_spec, only_run, run

    spec = curated_spec({"name": "entropy-select", "pool": 3}, generations=3)
    spec["metrics"] = {"k": 5, "names": ["w2", "train_entropy", "novelty"]}
    table = run(tmp_path, spec)
    rows = table.set_index(["generation", "metric"])["value"]
    for t in (1, 2, 3):
        assert rows[(t, "reward_after")] > rows[(t, "reward_before")]  # the kept set's entropy estimate rose
        assert rows[(t, "candidates")] == 3 * 40
    store = only_run(tmp_path)
    first = store.samples(3).x.copy()
    (tmp_path / "metrics.parquet").unlink()
    again = run(tmp_path, spec)  # a rerun resumes: nothing recomputed, the same table
    np.testing.assert_array_equal(store.samples(3).x, first)  # exact: the stored samples, read back
    assert again.sort_values(["generation", "metric"])["value"].tolist() == \
        table.sort_values(["generation", "metric"])["value"].tolist()
