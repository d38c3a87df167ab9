"""Ecosystems (issue 23): spec validation, the engine against closed forms, equivalences, resume, faults."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from madlab.engine.ecosystem import Ecosystem, moment_recursion
from madlab.engine.loop import Loop
from madlab.runner.ecosystem import EcoRunner
from madlab.schema.ecosystem import member_seed
from madlab.specs import build_spec
from madlab.specs.ecosystem import build_ecosystem_spec
from madlab.store.storage import RunStore


def eco_spec(members=2, real="fixed", generations=4, mixing=None, n=40, dim=2, **extra) -> dict:
    names = "abcdefgh"[:members]
    spec = {"name": "eco", "seed": 0, "dataset": {"name": "gaussian", "dim": dim},
            "ecosystem": {"generations": generations, "real": real,
                          "members": [{"name": x, "generator": {"name": "gaussian"}, "n_real": n, "n_synthetic": n}
                                      for x in names]},
            "metrics": {"k": 5, "names": ["mean_shift", "trace_cov"]}}
    if members > 1 or mixing is not None:
        spec["ecosystem"]["mixing"] = mixing if mixing is not None else np.full((members, members), 1 / members).tolist()
    spec["ecosystem"].update(extra)
    return spec


def run(spec: dict, out, **kwargs):
    return EcoRunner(build_ecosystem_spec(spec), str(out), use_ray=False, stream=open(os.devnull, "w"), **kwargs).run()


def member_store(out, spec_obj, eco_index: int, member: str) -> RunStore:
    return RunStore(out / "runs" / spec_obj.runs[eco_index].member_id(member))


# ----------------------------------------------------------------------------- bad input

BAD = [
    ("W rows", {"mixing": [[1.0, 0.0]]}, "ecosystem.mixing: W has 1 rows but there are 2 members"),
    ("W row length", {"mixing": [[1.0], [0.0, 1.0]]}, "ecosystem.mixing.0: row has 1 entries"),
    ("W row sum", {"mixing": [[0.5, 0.4], [0.5, 0.5]]}, "ecosystem.mixing.0: row sums to 0.9"),
    ("W negative", {"mixing": [[1.5, -0.5], [0.5, 0.5]]}, "ecosystem.mixing.0: weights must be >= 0"),
    ("pool and W", {"pool": {"publish": 10}}, "ecosystem.pool: give either mixing"),
    ("unknown key", {"colour": 1}, "ecosystem.colour: unknown key"),
    ("real scheme", {"real": "sometimes"}, "ecosystem.real:"),
]


@pytest.mark.parametrize("label,patch,message", BAD, ids=[b[0] for b in BAD])
def test_bad_ecosystem_is_one_line_exit_2_nothing_written(cli, write_spec, tmp_path, label, patch, message):
    spec = eco_spec()
    spec["ecosystem"].update(patch)
    out = tmp_path / "out"
    for command in (["validate"], ["run", "--no-ray", "--out", str(out)]):
        code, stdout, err = cli(*command[:1], write_spec(spec), *command[1:])
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (label, err)
    assert not out.exists()


@pytest.mark.parametrize("member_patch,message", [
    ({"generator": {"name": "ngram"}}, "ecosystem.members.1.generator.name: 'ngram' does not handle vector data"),
    ({"bias": 1.3}, "ecosystem.members.1.bias: λ is MAD's sampling bias for generator 'gaussian' (vector data), "
                    "in [0, 1]; λ > 1 is a temperature, allowed only for text generators"),
    ({"n_real": 1}, "ecosystem.members.1.n_real: generator 'gaussian' needs at least 2"),
    ({"generator": {"name": "gaussian", "width": 3}}, "ecosystem.members.1.generator.width: unknown key"),
    ({"n_real": -1}, "ecosystem.members.1.n_real:"),
])
def test_bad_member_names_its_key(member_patch, message):
    spec = eco_spec()
    spec["ecosystem"]["members"][1].update(member_patch)
    with pytest.raises(Exception) as info:
        build_ecosystem_spec(spec)
    assert message in str(info.value)


def test_text_temperature_above_one_is_allowed_and_bias_is_not():
    text = {"name": "t", "dataset": {"name": "markov-text"}, "generator": {"name": "ngram"},
            "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 20, "n_synthetic": 20, "bias": 1.3}}
    assert build_spec(text).runs[0].config.loop.bias == 1.3  # a temperature
    vector = {"name": "t", "dataset": {"name": "gaussian"}, "generator": {"name": "gaussian"},
              "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 20, "n_synthetic": 20, "bias": 1.3}}
    with pytest.raises(Exception, match="loop.bias: λ is MAD's sampling bias"):
        build_spec(vector)


# ----------------------------------------------------------------------------- the plan

def test_counts_rows_sum_exactly_blocks_are_disjoint_and_single_member_is_the_plain_plan():
    spec = build_ecosystem_spec(eco_spec(3, mixing=[[0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3], [0, 0, 1]], n=41))
    eco = Ecosystem(spec.runs[0].ecosystem, 0)
    for i in eco.names:
        assert sum(eco.counts[i].values()) == 41
    for j in eco.names:  # consumers' blocks of member j tile [0, sum) without overlap
        blocks = sorted((eco.offset(i, j), eco.offset(i, j) + eco.counts[i][j]) for i in eco.names)
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:])) and blocks[-1][1] <= eco.produced(j)
    single = Ecosystem(build_ecosystem_spec(eco_spec(1)).runs[0].ecosystem, 0)
    plain = build_spec({"name": "t", "dataset": {"name": "gaussian"}, "generator": {"name": "gaussian"},
                        "loop": {"scheme": "fixed-real", "generations": 4, "n_real": 40, "n_synthetic": 40}})
    for t in range(1, 5):
        mine, theirs = single.plan("a", t).parts, Loop(plain.runs[0].config, "/nonexistent").plan(t).parts
        assert [(p.source if p.source == "real" else p.source[1], p.n, p.offset) for p in mine] == \
            [(p.source, p.n, p.offset) for p in theirs]


# ----------------------------------------------------------------------------- equivalences

@pytest.mark.fp_exact
def test_single_member_ecosystem_equals_the_plain_loop_bit_for_bit(tmp_path):
    spec = eco_spec(1, generations=4)
    run(spec, tmp_path / "eco")
    plain = build_spec({"name": "eco.a", "seed": member_seed(0, "a"), "dataset": spec["dataset"],
                        "generator": {"name": "gaussian"}, "metrics": spec["metrics"],
                        "loop": {"scheme": "fixed-real", "generations": 4, "n_real": 40, "n_synthetic": 40}})
    Loop(plain.runs[0].config, tmp_path / "plain").run()
    ours = member_store(tmp_path / "eco", build_ecosystem_spec(spec), 0, "a")
    theirs = RunStore(tmp_path / "plain")
    for t in range(1, 5):
        # exact: same path — the member's step is Loop._step with the same plan rows, the same seeds
        # (derive_seed of the member's seed) and samples read back bit for bit from the npz it wrote
        assert np.array_equal(ours.samples(t).x, theirs.samples(t).x)
        assert ours.record(t)["metrics"] == theirs.record(t)["metrics"]


@pytest.mark.fp_exact
def test_member_order_changes_no_member_numbers(tmp_path):
    w = [[0.6, 0.4, 0.0], [0.1, 0.2, 0.7], [0.5, 0.0, 0.5]]
    forward = eco_spec(3, mixing=w, generations=3)
    backward = copy.deepcopy(forward)
    backward["ecosystem"]["members"] = forward["ecosystem"]["members"][::-1]
    backward["ecosystem"]["mixing"] = [row[::-1] for row in w[::-1]]
    run(forward, tmp_path / "f")
    run(backward, tmp_path / "b")
    f, b = (pd.read_parquet(tmp_path / x / "metrics.parquet") for x in ("f", "b"))
    key = ["member", "generation", "metric"]
    f, b = (x.sort_values(key).reset_index(drop=True) for x in (f, b))
    # exact: same path — a member's seed and every choice depend on member names, never on list positions
    assert f[key + ["value", "synthetic_from"]].equals(b[key + ["value", "synthetic_from"]])


# ----------------------------------------------------------------------------- resume and faults

@pytest.mark.fp_exact
def test_a_failed_member_stops_its_ecosystem_and_a_rerun_gives_the_same_table(tmp_path, monkeypatch):
    spec = eco_spec(2, generations=4)
    run(spec, tmp_path / "whole")
    spec_obj = build_ecosystem_spec(spec)
    failing = spec_obj.runs[0].member_id("b")
    summary = run(spec, tmp_path / "cut", fault=f"raise:{failing}:3")
    assert [o.run_id for o in summary.failed] == [failing]
    assert member_store(tmp_path / "cut", spec_obj, 0, "a").last_done() == 3  # a's generation 3 was published
    assert member_store(tmp_path / "cut", spec_obj, 0, "b").last_done() == 2  # ... the barrier held a at 3
    assert not run(spec, tmp_path / "cut").failed
    # exact: same path — resumed generations are the same pure steps with the same seeds
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole" / "metrics.parquet"),
                                  pd.read_parquet(tmp_path / "cut" / "metrics.parquet"))


@pytest.mark.slow
@pytest.mark.fp_exact
def test_killed_member_task_mid_generation_then_resume(tmp_path, write_spec):
    spec = eco_spec(2, generations=4)
    path = write_spec(spec)
    failing = build_ecosystem_spec(spec).runs[0].member_id("b")
    command = [sys.executable, "-m", "madlab", "run", str(path), "--no-ray", "--out", str(tmp_path / "cut")]
    killed = subprocess.run(command, env={**os.environ, "MADLAB_FAULT": f"kill:{failing}:3"}, capture_output=True)
    assert killed.returncode == 17  # the process died like a lost node, between a's and b's generation 3
    assert subprocess.run(command, capture_output=True).returncode == 0
    run(spec, tmp_path / "whole")
    # exact: same path — see test_a_failed_member_stops_its_ecosystem_and_a_rerun_gives_the_same_table
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole" / "metrics.parquet"),
                                  pd.read_parquet(tmp_path / "cut" / "metrics.parquet"))


# ----------------------------------------------------------------------------- closed forms

def _means(out, spec_obj, generations):
    """(seeds, T, M, d) fitted means, (seeds, T, M, d, d) fitted covariances, names in order."""
    names = sorted(spec_obj.runs[0].members)
    mu = np.array([[[member_store(out, spec_obj, s, n).state(t)["mean"] for n in names]
                    for t in range(1, generations + 1)] for s in range(len(spec_obj.runs))])
    cov = np.array([[[member_store(out, spec_obj, s, n).state(t)["cov"] for n in names]
                     for t in range(1, generations + 1)] for s in range(len(spec_obj.runs))])
    return mu, cov, names


def _one_step_z(spec_obj, mu, cov, names) -> np.ndarray:
    """Whitened one-step residuals. Given generation t−1, member i's mean is the average of its n_i rows:
    real rows (fixed: the same rows as generation 1, mean μ̂_i,1 exactly; fresh: new N(0, I) rows) and
    m_ij rows drawn from N(μ̂_j, λ_j Σ̂_j), a disjoint block per consumer. So
        r = μ̂_i,t − Σ_j (m_ij/n_i) μ̂_j,t−1 − (fixed: n_r/n_i μ̂_i,1)  ~  N(0, V),
        V = Σ_j m_ij λ_j Σ̂_j / n_i² (+ fresh: n_r I / n_i²)          exactly, given t−1,
    and z = L⁻¹ r (V = L Lᵀ) is N(0, I_d) given the past: every z over seeds, members and generations is an
    independent standard normal (each is independent of everything before it)."""
    eco = Ecosystem(spec_obj.runs[0].ecosystem, 0)
    real = eco.config.real
    z = []
    for s in range(mu.shape[0]):
        for t in range(1, mu.shape[1]):
            for a, i in enumerate(names):
                m = np.array([eco.counts[i][j] for j in names], dtype=float)
                n_r = eco.members[i].n_real if real != "none" else 0
                n_i = n_r + m.sum()
                lam = np.array([eco.members[j].bias for j in names])
                r = mu[s, t, a] - (m / n_i) @ mu[s, t - 1]
                v = np.einsum("j,jkl->kl", m * lam, cov[s, t - 1]) / n_i**2
                if real == "fixed":
                    r -= n_r / n_i * mu[s, 0, a]
                elif real == "fresh":
                    v += n_r * np.eye(len(r)) / n_i**2
                z.append(np.linalg.solve(np.linalg.cholesky(v), r))
    return np.concatenate(z)


@pytest.mark.parametrize("real,mixing,bias", [
    ("fixed", [[0.5, 0.5], [0.5, 0.5]], (1.0, 1.0)),              # Vu et al.'s α = β = 0.5
    ("fresh", [[0.3, 0.7], [0.9, 0.1]], (1.0, 0.7)),
    ("none", [[0.0, 1.0], [1.0, 0.0]], (0.9, 1.0)),
])
def test_first_moment_follows_the_mixing_matrix_one_step_exactly(tmp_path, real, mixing, bias):
    """E[e_t | t−1] = Q e_(t−1) (+ the fixed real rows' share), and the conditional covariance is V."""
    seeds, generations = 25, 5
    spec = eco_spec(2, real=real, generations=generations, mixing=mixing, n=30, dim=3)
    for member, lam in zip(spec["ecosystem"]["members"], bias):
        member["bias"] = lam
    spec["sweep"] = {"seed": list(range(seeds))}
    run(spec, tmp_path / "o")
    spec_obj = build_ecosystem_spec(spec)
    mu, cov, names = _means(tmp_path / "o", spec_obj, generations)
    z = _one_step_z(spec_obj, mu, cov, names)
    n = len(z)  # 25 seeds x 4 steps x 2 members x 3 coordinates = 600 independent N(0, 1)
    # mean of n iid N(0,1) is N(0, 1/n): |mean| <= 4.5/sqrt(n) fails with probability 7e-6
    assert abs(z.mean()) <= 4.5 / np.sqrt(n), z.mean()
    # mean of z^2 is (chi^2_n)/n: mean 1, sd sqrt(2/n); 4.5 sd (the normal approximation at n = 600 errs by
    # the chi^2 skewness sqrt(8/n) ~ 0.1 sd: the bound still fails with probability < 1e-4)
    assert abs((z**2).mean() - 1) <= 4.5 * np.sqrt(2 / n), (z**2).mean()


@pytest.mark.slow  # 5 s each on an idle 2-core machine, 20 s under load
@pytest.mark.parametrize("real,mixing", [
    ("fresh", [[0.5, 0.5], [0.5, 0.5]]),                        # every row keeps real data: bounded
    ("none", [[0, 1, 0], [0, 0, 1], [1, 0, 0]]),                # a 3-cycle, no real data: linear growth
])
def test_second_moments_follow_the_closed_form_recursion(tmp_path, real, mixing):
    seeds, generations, dim = 40, 6, 4
    members = len(mixing)
    spec = eco_spec(members, real=real, generations=generations, mixing=mixing, n=20, dim=dim)
    spec["sweep"] = {"seed": list(range(seeds))}
    run(spec, tmp_path / "o")
    spec_obj = build_ecosystem_spec(spec)
    mu, cov, names = _means(tmp_path / "o", spec_obj, generations)
    theory = moment_recursion(Ecosystem(spec_obj.runs[0].ecosystem, 0), generations)
    # per seed, the average over coordinates of e^2 (and of the fitted variances): one observation per seed,
    # seeds independent, so the mean over seeds has standard error sd/sqrt(seeds) (CLT; sd estimated from the
    # seeds); 5 standard errors at 40 seeds: the Student-t(39) tail beyond 5 is 1e-5 per check
    for measured, expected in ((mu**2).mean(-1), theory["mean_sq"]), \
                              (np.diagonal(cov, axis1=-2, axis2=-1).mean(-1), theory["var"]):
        centre = measured.mean(0)
        se = measured.std(0, ddof=1) / np.sqrt(seeds)
        assert np.all(np.abs(centre - expected) <= 5 * se), (centre, expected, se)
    if real == "none":  # λ = 1 without real data: E σ̂² stays 1 and E e² grows by 1/n a generation
        assert np.allclose(theory["mean_sq"][:, 0], 1 / 20 + np.arange(generations) / 20)
    else:  # bounded: the recursion's fixed point is finite
        assert theory["mean_sq"][-1, 0] < 2 / 20


# ----------------------------------------------------------------------------- Ray, pool, text

@pytest.mark.slow  # about 30 s with Ray's start-up on a shared 2-core machine
@pytest.mark.fp_exact
def test_ray_tasks_give_the_same_table_as_no_ray_and_survive_a_killed_member(tmp_path, ray_session):
    spec = eco_spec(2, generations=3)
    failing = build_ecosystem_spec(spec).runs[0].member_id("b")
    run(spec, tmp_path / "local")
    EcoRunner(build_ecosystem_spec(spec), str(tmp_path / "ray"), use_ray=True, stream=open(os.devnull, "w"),
              fault=f"kill:{failing}:2").run()  # b's worker dies before generation 2; Ray retries the task
    assert (tmp_path / "ray" / "runs" / failing / ".fault-kill-2").exists()  # the kill did happen
    # exact: same path — Ray workers and --no-ray run the same steps with the same thread count
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / "metrics.parquet"),
                                  pd.read_parquet(tmp_path / "ray" / "metrics.parquet"))


def test_public_pool_publishes_and_subsamples_seeded_and_recorded(tmp_path):
    spec = eco_spec(3, generations=4, n=30)
    del spec["ecosystem"]["mixing"]
    spec["ecosystem"]["pool"] = {"publish": 10}
    spec["metrics"]["names"] = ["mean_shift"]
    run(spec, tmp_path / "o")
    spec_obj = build_ecosystem_spec(spec)
    eco_id = spec_obj.runs[0].eco_id
    table = pd.read_parquet(tmp_path / "o" / "metrics.parquet")
    pool = table[table.member == "pool"].pivot(index="generation", columns="metric", values="value")
    assert pool.pool_size.tolist() == [30.0, 60.0, 90.0, 120.0]  # 3 members x 10 rows a generation
    assert np.isfinite(pool.pool_w2).all()
    rows = table[(table.metric == "mean_shift") & (table.generation > 1)]
    assert (rows.n_train_pool == 30).all() and (rows.n_train_synthetic == 30).all()
    import json
    record = json.loads((tmp_path / "o" / "ecosystems" / eco_id / "gen-0003.json").read_text())
    eco = Ecosystem(spec_obj.runs[0].ecosystem, 0)
    published = {(j, g): set(eco.published(j, g).tolist()) for j in eco.names for g in (1, 2)}
    for name, parts in record["plans"].items():
        chosen = [(tuple(p["source"]), r) for p in parts if p["source"] != "real" for r in p["select"]]
        assert len(chosen) == 30 and all(r in published[src] for src, r in chosen)  # only published rows
    # and the choice is the seeded plan's, not the process's: the same plan recomputed
    assert record["plans"]["a"] == eco.plan("a", 3).record()


def test_text_members_at_temperature_above_one_and_their_cross_metric(tmp_path):
    spec = {"name": "heat", "seed": 0, "dataset": {"name": "markov-text"},
            "ecosystem": {"generations": 3, "real": "none",
                          "members": [{"name": x, "generator": {"name": "ngram", "order": 2}, "bias": lam,
                                       "n_real": 40, "n_synthetic": 40} for x, lam in (("hot", 1.3), ("cool", 0.7))],
                          "mixing": [[0.5, 0.5], [0.5, 0.5]]},
            "metrics": {"names": ["unigram_entropy", "distinct_1"]}}
    run(spec, tmp_path / "o")
    table = pd.read_parquet(tmp_path / "o" / "metrics.parquet")
    cross = table[table.metric == "cross_unigram_tv"]
    assert len(cross) == 3 and ((cross.value >= 0) & (cross.value <= 1)).all()
    assert len(table[table.metric == "cross_unigram_tv_mean"]) == 3
    assert set(table[table.metric == "unigram_entropy"].bias) == {0.7, 1.3}


def test_a_member_training_set_too_small_after_generation_one_is_refused():
    spec = eco_spec(1, real="none")
    spec["ecosystem"]["members"][0]["n_synthetic"] = 1
    with pytest.raises(Exception, match="ecosystem.members.0.n_synthetic: generator 'gaussian' needs at least 2 "
                                        "training samples, generation 2 would have 1"):
        build_ecosystem_spec(spec)
