"""The contract every dataset madlab ships passes (madlab.testing's dataset kit), once per case.

A dataset registered in madlab's own ``madlab.datasets`` entry points without a case here fails
``test_every_shipped_dataset_has_a_case``. ``ffhq``, ``mnist``, ``text``, ``pydoc-text`` and the library
datasets (torchvision's, Hugging Face's) read files this test does not have; tests/test_image_datasets.py,
tests/test_text_data.py and tests/test_dataset_libraries.py open them on fixtures.
"""
from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from madlab.testing import DatasetCase, DatasetContract, check_dataset_determinism, check_draw, check_registered

CASES = [
    DatasetCase("gaussian", {"dim": 3}, bad=({"dim": 0},)),
    DatasetCase("gmm25", {"std": 0.1}, bad=({"std": -1.0}, {"spacing": 0})),
    DatasetCase("rosenbrock", bad=({"b": 0},)),
    DatasetCase("mnist5k", n=8),
    DatasetCase("zipf-text", {"vocab_size": 30, "max_tokens": 12}, n=8, bad=({"vocab_size": 1},)),
    DatasetCase("markov-text", {"vocab_size": 20, "max_tokens": 10}, n=8, bad=({"concentration": 0},)),
]
#: shipped datasets that need files on disk (their own tests build them)
NEED_FILES = {"ffhq", "mnist", "text", "pydoc-text", "cifar10", "cifar100", "fashion-mnist", "svhn", "celeba",
              "hf-images"}


class TestShippedDatasets(DatasetContract):
    cases = CASES


def test_every_shipped_dataset_has_a_case():
    shipped = {ep.name for ep in entry_points(group="madlab.datasets")
               if getattr(ep, "dist", None) is not None and ep.dist.name == "madlab"}
    missing = shipped - {c.name for c in CASES} - NEED_FILES
    assert not missing, f"add a DatasetCase for {sorted(missing)} in tests/test_dataset_contract.py"


BROKEN = '''
import numpy as np
from madlab.plugins import Dataset, Samples


class Frozen(Dataset):
    """Ignores its seed: every draw is the same rows, which fresh-real and independent seeds cannot use."""

    name = "frozen"

    @property
    def shape(self):
        return (2,)

    def draw(self, n, *, seed, offset=0):
        return Samples(np.ones((n, 2)))
'''


def test_the_kit_fails_a_dataset_that_ignores_its_seed(tmp_path, madlab_entry_point):
    (tmp_path / "frozen_ds.py").write_text(BROKEN)
    madlab_entry_point("frozen", "frozen_ds:Frozen", tmp_path, group="madlab.datasets")
    case = DatasetCase("frozen")
    check_registered(case)
    check_draw(case)  # the shape and dtype are right
    with pytest.raises(AssertionError, match="another seed gave the same rows"):
        check_dataset_determinism(case)
