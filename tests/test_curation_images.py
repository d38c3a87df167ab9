"""Image curators on the embedded MNIST digits with the pinned LeNet (slow: LeNet trains once, ~1 min,
then is cached). Candidates are real digits (and corrupted ones), so the expected behaviour is known."""
from __future__ import annotations

import numpy as np
import pytest

from madlab.testing import CURATOR_CHECKS as ALL_CHECKS, CuratorCase, make_dataset
from madlab.curation.params import make_curator_params
from madlab.curation.rewards import lenet_log_probs
from madlab.core.samples import Samples

pytestmark = pytest.mark.slow
MNIST = {"name": "mnist5k"}
Z = 4.0

CASES = [
    CuratorCase({"name": "best-of-k", "k": 2, "reward": {"name": "classifier", "target": 3}}, MNIST, n_keep=20,
                n_real=100),
    CuratorCase({"name": "verify", "threshold": 0.9, "false_accept": 0.1}, MNIST, n_keep=20, n_real=100),
    CuratorCase({"name": "self-correct", "gamma": 0.5, "clusters": 2, "space": "lenet"}, MNIST, n_keep=20,
                n_real=100, bad=({"name": "self-correct", "gamma": 0.5, "method": "assignment"},)),
    CuratorCase({"name": "detector", "b": 1.0, "pool": 2}, MNIST, n_keep=20, n_real=100,
                bad=({"name": "detector", "features": "quadratic"},)),
]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_image_curator_contract(case, check):
    check(case)


def curator(section):
    dataset = make_dataset(MNIST)
    cls, params = make_curator_params(section)
    return cls(params, dataset=dataset), dataset


def test_best_of_k_on_the_classifier_reward_keeps_the_target_digit():
    cur, ds = curator({"name": "best-of-k", "k": 4, "beta": float("inf"), "reward": {"name": "classifier", "target": 3}})
    cand = ds.draw(4 * 500, seed=1)
    out = cur.curate(cand, 500, real=ds.draw(10, seed=2), seed=0)
    # a group of 4 random digits holds a 3 with probability 1 - 0.9^4 = 0.34; the classifier (98.8%
    # accurate) then picks it, else the most 3-like other digit
    share = (out.samples.y == 3).mean()
    expected = 1 - 0.9**4
    assert abs(share - expected) < Z * np.sqrt(expected * (1 - expected) / 500) + 0.03, share
    assert out.reward_after > out.reward_before


def test_verify_accepts_confident_agreeing_digits_with_the_configured_errors():
    fa, fr = 0.3, 0.1
    cur, ds = curator({"name": "verify", "threshold": 0.9, "false_accept": fa, "false_reject": fr})
    cand = ds.draw(2000, seed=3)
    wrong_labels = cand.y.copy()
    wrong_labels[:1000] = (wrong_labels[:1000] + 1) % 10  # half the samples disagree with their label
    cand = Samples(cand.x, wrong_labels)
    right, _ = cur.verdicts(cand)
    assert right[:1000].mean() < 0.05 and right[1000:].mean() > 0.9
    out = cur.curate(cand, 2000, real=ds.draw(10, seed=4), seed=5)
    accepted = np.zeros(2000, bool)
    accepted[out.index] = True
    for rate, got, n in ((fa, accepted[~right].mean(), (~right).sum()), (fr, (~accepted[right]).mean(), right.sum())):
        assert abs(got - rate) <= Z * np.sqrt(rate * (1 - rate) / n), (rate, got, n)


def test_self_correct_in_lenet_space_moves_digits_to_their_class_centres():
    cur, ds = curator({"name": "self-correct", "gamma": 1.0, "clusters": 4, "space": "lenet"})
    real, cand = ds.draw(1000, seed=6), ds.draw(300, seed=7)
    out = cur.curate(cand, 300, real=real, seed=0).samples
    assert len(np.unique(out.x.reshape(300, -1), axis=0)) <= 40  # 4 centres per digit
    assert (lenet_log_probs(out.x).argmax(1) == cand.y).mean() > 0.9  # per-class centres stay that digit


def test_detector_downweights_corrupted_digits():
    cur, ds = curator({"name": "detector", "b": 2.0, "pool": 1})
    real = ds.draw(500, seed=8)
    clean, noisy = ds.draw(250, seed=9), ds.draw(250, seed=10)
    noise = np.random.default_rng(0).uniform(-1, 1, noisy.x.shape).astype(np.float32)
    cand = Samples(np.concatenate([clean.x, np.clip(0.5 * noisy.x + 0.5 * noise, -1, 1)]),
                   np.concatenate([clean.y, noisy.y]))
    out = cur.curate(cand, 500, real=real, seed=1)
    assert (out.index >= 250).mean() < 0.25  # the corrupted half is resampled far below its 50%
