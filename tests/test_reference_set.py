"""The metrics' real reference set (issue 24 item 3): held out from training wherever the dataset has a
split, the training pool with ``metrics.reference: training-pool`` (MAD's protocol), and every run
records which (``metadata.reference``) and the report shows it."""
from __future__ import annotations

import numpy as np
import pytest

from madlab.datasets import open_dataset
from madlab.metrics import reference_set, reference_source
from madlab.schema.config import MetricsConfig

from conftest import gaussian_spec

HELDOUT, POOL = MetricsConfig(), MetricsConfig(reference="training-pool")


def keys(x: np.ndarray) -> set:
    return {row.tobytes() for row in np.asarray(x)}


def test_image_reference_is_held_out_where_a_split_exists():
    data = open_dataset({"name": "mnist5k", "holdout": 400})
    train = keys(data.draw(data.size, seed=0).x)
    held = reference_set(data, HELDOUT, 300, seed=1)
    pool = reference_set(data, POOL, 300, seed=1)
    # MNIST digits repeat pixel for pixel only rarely; held-out rows never come from the training draw
    assert not keys(held.x) & train and keys(pool.x) <= train
    assert reference_source(data, HELDOUT) == "held-out split"
    assert reference_source(data, POOL) == "training pool (metrics.reference: training-pool)"


def test_without_a_split_the_record_says_training_pool():
    data = open_dataset({"name": "mnist5k"})
    assert reference_source(data, HELDOUT) == "training pool (no held-out split)"
    # exact: with no split both settings take the same permutation of the same pool
    np.testing.assert_array_equal(reference_set(data, HELDOUT, 50, seed=3).x, reference_set(data, POOL, 50, seed=3).x)


def test_text_reference_is_the_held_out_split_unless_asked():
    data = open_dataset({"name": "pydoc-text"})
    train = keys(data._encoded[data._train_idx])
    assert keys(reference_set(data, POOL, 40, seed=0).x) <= train
    assert reference_source(data, HELDOUT) == "held-out split"
    heldout = reference_set(data, HELDOUT, 40, seed=0).x
    assert len(keys(heldout) - train) > 30  # held-out documents (a few short ones may repeat a training one)


def test_default_keeps_run_ids_and_the_setting_changes_them():
    from madlab.specs import build_spec

    plain = gaussian_spec()
    pool = gaussian_spec()
    pool["metrics"] = {"k": 5, "reference": "training-pool"}
    (a,), (b,) = build_spec(plain).runs, build_spec(pool).runs
    assert "reference" not in a.config.identity()["metrics"]
    assert a.config.run_hash() != b.config.run_hash()


@pytest.mark.parametrize("command", ["validate", "run --no-ray"])
def test_a_bad_reference_is_one_line(cli, write_spec, tmp_path, command):
    spec = gaussian_spec()
    spec["metrics"] = {"reference": "test"}
    out = tmp_path / "out"
    code, _, stderr = cli(*command.split(), write_spec(spec), *(["--out", out] if command != "validate" else []))
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "metrics.reference" in stderr, stderr
    assert not out.exists()


def test_runs_record_their_reference_set(tmp_path):
    from madlab.engine.batched.loop import BatchLoop
    from madlab.engine.loop import Loop
    from madlab.specs import build_spec

    (run,) = build_spec(gaussian_spec(generations=1)).runs
    loop = Loop(run.config, tmp_path / "run")
    loop.run()
    assert loop.store.record(1)["metadata"]["reference"] == "fresh draws"
    assert BatchLoop([run.config]).evaluator.metadata["reference"] == "fresh draws"
