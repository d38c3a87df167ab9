"""Generation 1 is computed once per results folder for the runs that would compute it identically."""
from __future__ import annotations

import pandas as pd
import pytest

from madlab.config import build_spec
from madlab.shared_generation import first_generation_key

GAN = {"name": "gan", "width": 16, "depth": 1, "latent_dim": 2, "steps": 5, "batch_size": 32}


def _spec(**loop) -> dict:
    return {"name": "share", "seed": 0, "dataset": {"name": "gmm25"}, "generator": dict(GAN),
            "loop": {"scheme": "fully-synthetic", "generations": 3, "n_real": 60, "n_synthetic": 60, **loop},
            "metrics": {"k": 3}}


SCHEMES = {"loop.scheme": ["fully-synthetic", "fixed-real", "fresh-real"]}


@pytest.fixture
def count_fits(monkeypatch):
    from madlab_generators.gan import GANGenerator

    calls = []
    original = GANGenerator.fit

    def fit(self, data, *, seed):
        calls.append(len(data))
        return original(self, data, seed=seed)

    monkeypatch.setattr(GANGenerator, "fit", fit)
    return calls


def test_runs_differing_only_in_scheme_share_generation_one(cli, write_spec, tmp_path, count_fits):
    out = tmp_path / "out"
    assert cli("run", write_spec({**_spec(), "sweep": SCHEMES}), "--out", out, "--no-ray")[0] == 0
    assert len(count_fits) == 1 + 3 * 2, "generation 1 must be trained once, generations 2-3 once per run"
    table = pd.read_parquet(out / "metrics.parquet")
    first = table[table.generation == 1].pivot_table(index="metric", columns="scheme", values="value")
    assert (first.nunique(axis=1) == 1).all()
    later = table[table.generation == 3].pivot_table(index="metric", columns="scheme", values="value")
    assert (later.nunique(axis=1) > 1).any(), "the schemes must still differ after generation 1"
    for run_dir in (out / "runs").iterdir():  # each run folder holds its own generation 1
        assert (run_dir / "gen-0001" / "DONE").is_file() and (run_dir / "gen-0001" / "state.safetensors").is_file()


@pytest.mark.fp_exact
def test_shared_generation_gives_the_table_of_separate_runs(cli, write_spec, tmp_path, count_fits):
    shared = tmp_path / "shared"
    assert cli("run", write_spec({**_spec(), "sweep": SCHEMES}), "--out", shared, "--no-ray")[0] == 0
    separate = []
    for scheme in SCHEMES["loop.scheme"]:  # one results folder each: nothing to share
        out = tmp_path / scheme
        assert cli("run", write_spec(_spec(scheme=scheme), f"{scheme}.yaml"), "--out", out, "--no-ray")[0] == 0
        separate.append(pd.read_parquet(out / "metrics.parquet"))
    columns = ["scheme", "generation", "metric", "value"]
    together = pd.read_parquet(shared / "metrics.parquet")[columns].sort_values(columns[:3]).reset_index(drop=True)
    apart = pd.concat(separate)[columns].sort_values(columns[:3]).reset_index(drop=True)
    # exact: same path — generation 1 trained once and shared is the same computation as trained per loop
    pd.testing.assert_frame_equal(together, apart)


@pytest.mark.fp_exact
def test_resume_after_sharing_is_unchanged(cli, write_spec, tmp_path, count_fits):
    path, out = write_spec({**_spec(), "sweep": SCHEMES}), tmp_path / "out"
    assert cli("run", path, "--out", out, "--no-ray", "--set", "loop.generations=1")[0] == 0
    assert len(count_fits) == 1
    assert cli("run", path, "--out", out, "--no-ray")[0] == 0
    # generations=1 and generations=3 are different runs (ids), but they share generation 1
    assert len(count_fits) == 1 + 3 * 2


def _key(patch: dict) -> str:
    raw = _spec()
    for dotted, value in patch.items():
        section, key = dotted.split(".")
        raw[section] = {**raw[section], key: value}
    return first_generation_key(build_spec(raw).runs[0].config)


def test_the_key_covers_what_determines_generation_one():
    base = _key({})
    for irrelevant in ({"loop.scheme": "accumulate"}, {"loop.generations": 7}, {"loop.warm_start": True},
                       {"loop.scheme": "fresh-real", "loop.memory": 2}):
        assert _key(irrelevant) == base, irrelevant
    for relevant in ({"loop.n_real": 61}, {"loop.n_synthetic": 61}, {"loop.bias": 0.5},
                     {"generator.steps": 6}, {"metrics.k": 4}, {"dataset.std": 0.1}):
        assert _key(relevant) != base, relevant
    assert _key({"loop.scheme": "fresh-real", "loop.n_initial": 60}) == base  # same generation-1 size
    assert _key({"loop.scheme": "fresh-real", "loop.n_initial": 50}) != base


def test_runs_sharing_a_generation_one_are_started_apart():
    """Two seeds x three schemes: the order starts both seeds' first runs before any second run."""
    from madlab.runner.jobs import Job, spread_shared_first

    raw = _spec()
    raw["sweep"] = {"seed": [0, 1], **SCHEMES}
    runs = build_spec(raw).runs
    jobs = [Job(r.run_id, r.config.model_dump(mode="json"), r.swept, f"/tmp/{r.run_id}", "share") for r in runs]
    keys = [first_generation_key(r.config) for r in runs]
    assert len(set(keys)) == 2
    order = spread_shared_first(jobs)
    assert sorted(j.run_id for j in order) == sorted(j.run_id for j in jobs)
    key_of = {r.run_id: k for r, k in zip(runs, keys)}
    ordered_keys = [key_of[j.run_id] for j in order]
    assert len(set(ordered_keys[:2])) == 2  # both generation-1 models first
    assert all(a != b for a, b in zip(ordered_keys, ordered_keys[1:]))  # never two of one group in a row
