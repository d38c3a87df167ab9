"""Each scheme builds exactly the training set docs/design.md describes, counts and provenance."""
import numpy as np
import pytest

from madlab.schema.config import LoopConfig
from madlab.specs import build_spec
from madlab.engine.loop import Loop
from madlab.schema.schemes import plan

from conftest import gaussian_spec

R, S = 30, 20


def loop(scheme, **kw):
    return LoopConfig(scheme=scheme, generations=5, n_real=R, n_synthetic=S, **kw)


def summary(cfg, t):
    p = plan(cfg, t, subsample_seed=123)
    return p.n_real, p.n_synthetic, p.synthetic_from


@pytest.mark.parametrize("scheme", ["fully-synthetic", "fixed-real", "fresh-real", "accumulate", "accumulate-subsample"])
def test_generation_one_is_real_only(scheme):
    assert summary(loop(scheme), 1) == (R, 0, {})


def test_fully_synthetic_uses_previous_model_only():
    cfg = loop("fully-synthetic")
    assert [summary(cfg, t) for t in range(2, 6)] == [(0, S, {t - 1: S}) for t in range(2, 6)]


def test_fixed_real_reuses_the_same_real_rows():
    cfg = loop("fixed-real")
    for t in range(2, 6):
        p = plan(cfg, t)
        assert (p.n_real, p.n_synthetic, p.synthetic_from) == (R, S, {t - 1: S})
        assert [(q.offset, q.n) for q in p.parts if q.source == "real"] == [(0, R)]


def test_fixed_real_accumulate_synthetic_keeps_every_synthetic_set():
    cfg = loop("fixed-real", accumulate_synthetic=True)
    assert summary(cfg, 4) == (R, 3 * S, {1: S, 2: S, 3: S})


def test_fixed_real_truncated_accumulation_is_gillman_et_al_s():
    """Set g of G keeps its first floor(g n / G) rows: the count Gillman et al.'s toy computes as
    int((i + 1) / G * n) for its i-th set (0-based), compared here at the toy's n = 25 over 500 steps."""
    n = 25
    cfg = LoopConfig(scheme="fixed-real", generations=501, n_real=50, n_synthetic=n, accumulate_synthetic="truncated")
    for t in range(2, 502):
        sets = t - 1
        expected = {i + 1: int((i + 1) / sets * n) for i in range(sets)}
        p = plan(cfg, t)
        assert p.synthetic_from == {g: c for g, c in expected.items() if c}
        assert all(q.select is None for q in p.parts)  # the first rows of each set
        assert [(q.offset, q.n) for q in p.parts if q.source == "real"] == [(0, 50)]
    assert summary(cfg, 4) == (50, 8 + 16 + 25, {1: 8, 2: 16, 3: 25})


def test_fresh_real_draws_disjoint_new_real_rows():
    cfg = loop("fresh-real", n_initial=50)
    assert summary(cfg, 1) == (50, 0, {})
    ranges = []
    for t in range(1, 6):
        (part,) = [q for q in plan(cfg, t).parts if q.source == "real"]
        ranges.append((part.offset, part.offset + part.n))
    assert ranges == [(0, 50), (50, 80), (80, 110), (110, 140), (140, 170)]
    assert summary(cfg, 3) == (R, S, {2: S})


def test_fresh_real_memory_spreads_synthetic_over_last_k_models():
    cfg = loop("fresh-real", memory=3)
    assert summary(cfg, 2) == (R, S, {1: S})
    assert summary(cfg, 3) == (R, S, {1: 10, 2: 10})
    assert summary(cfg, 5) == (R, S, {2: 6, 3: 7, 4: 7})


def test_accumulate_keeps_all_real_and_all_synthetic():
    cfg = loop("accumulate")
    assert summary(cfg, 5) == (R, 4 * S, {1: S, 2: S, 3: S, 4: S})


def test_accumulate_subsample_has_fixed_size_and_mixes_sources():
    cfg = loop("accumulate-subsample", train_size=40)
    for t in range(2, 6):
        n_real, n_syn, sources = summary(cfg, t)
        assert n_real + n_syn == 40
        assert sum(sources.values()) == n_syn and set(sources) <= set(range(1, t))
    n_real, _, sources = summary(cfg, 5)
    assert n_real < R and len(sources) >= 2  # a uniform subsample of a 110-row pool


def test_accumulate_subsample_is_seeded():
    cfg = loop("accumulate-subsample")
    assert plan(cfg, 4, 1) == plan(cfg, 4, 1)
    assert plan(cfg, 4, 1) != plan(cfg, 4, 2)


@pytest.mark.parametrize("scheme,extra", [("fully-synthetic", {}), ("fixed-real", {"accumulate_synthetic": True}),
                                          ("fresh-real", {"n_initial": 60, "memory": 2}), ("accumulate", {}),
                                          ("accumulate-subsample", {"train_size": 50})])
def test_materialised_training_sets_match_the_plan(tmp_path, scheme, extra):
    spec = build_spec(gaussian_spec(scheme=scheme, generations=4, n_real=R, n_synthetic=S, **extra))
    run = Loop(spec.runs[0].config, tmp_path / "run")
    run.run()
    first_real = run.real(0, run.config.loop.first_size).x
    for t in range(1, 5):
        record = run.store.record(t)
        p = run.plan(t)
        train = run.training_set(p)
        assert len(train) == p.n_real + p.n_synthetic
        assert record["provenance"] == p.provenance()
        # synthetic rows are the exact samples an earlier generation published
        offset = p.n_real
        for part in [q for q in p.parts if q.source != "real"]:
            published = run.store.samples(part.source).x[:part.n]
            expected = published if part.select is None else published[list(part.select)]
            # exact: training sets are built from stored copies of published samples
            np.testing.assert_array_equal(train.x[offset:offset + part.count], expected)
            offset += part.count
        if scheme in ("fixed-real", "accumulate") or t == 1:
            # exact: the same real rows, copied
            np.testing.assert_array_equal(train.x[:p.n_real], first_real[:p.n_real])
        if scheme == "fresh-real" and t > 1:  # new real rows, none seen before
            fresh = train.x[:p.n_real]
            assert not (fresh[:, None, :] == first_real[None, :, :]).all(-1).any()
