"""The contract every registered curator passes (madlab.testing's curator kit), once per case.

A newly registered curator fails ``test_every_registered_curator_has_a_case`` until it adds a line
to ``CASES`` with a small configuration.
"""
from __future__ import annotations

from madlab.curation import curator_names
from madlab.testing import CuratorCase, CuratorContract

GMM = {"name": "gmm25"}
ROSEN = {"name": "rosenbrock"}
MNIST = {"name": "mnist5k"}

CASES: dict[str, list[CuratorCase]] = {
    "best-of-k": [
        CuratorCase({"name": "best-of-k", "k": 4, "beta": 2.0, "reward": {"name": "linear", "w": [1.0, -0.5]}},
                    bad=({"name": "best-of-k", "k": 0, "reward": {"name": "linear", "w": [1.0, 0.0]}},
                         {"name": "best-of-k", "reward": {"name": "linear", "w": [1.0]}},
                         {"name": "best-of-k", "reward": {"name": "banana"}},
                         {"name": "best-of-k", "k": 64, "reward": {"name": "linear", "w": [1.0, 0.0]}},
                         {"name": "best-of-k", "beta": -1, "reward": {"name": "log-density"}}),
                    wrong_data=(MNIST,)),
        CuratorCase({"name": "best-of-k", "k": 3, "beta": float("inf"), "reward": {"name": "log-density"}},
                    dataset=GMM),
        CuratorCase({"name": "best-of-k", "k": 2, "reward": {"name": "distance", "target": [1.0, 2.0]}},
                    dataset=ROSEN, bad=({"name": "best-of-k", "reward": {"name": "distance", "target": [1.0]}},)),
    ],
    "verify": [
        CuratorCase({"name": "verify", "quantile": 0.2, "false_accept": 0.1, "false_reject": 0.05},
                    bad=({"name": "verify", "quantile": 1.5}, {"name": "verify", "threshold": 0.9},
                         {"name": "verify", "false_reject": 1.0})),
        CuratorCase({"name": "verify", "quantile": 0.5, "max_oversampling": 4}, dataset=GMM),
    ],
    "self-correct": [
        CuratorCase({"name": "self-correct", "gamma": 0.5, "clusters": 8},
                    bad=({"name": "self-correct"}, {"name": "self-correct", "gamma": 1.5},
                         {"name": "self-correct", "gamma": 0.5, "space": "lenet"})),
        CuratorCase({"name": "self-correct", "gamma": 0.7, "method": "assignment"}, dataset=GMM),
        CuratorCase({"name": "self-correct", "gamma": 2.0, "method": "gillman-toy"},
                    bad=({"name": "self-correct", "gamma": 2.0, "method": "assignment"},
                         {"name": "self-correct", "gamma": -1.0, "method": "gillman-toy"}),
                    wrong_data=(MNIST,)),
        CuratorCase({"name": "self-correct", "gamma": 1.0, "method": "gillman-toy-rejection"}, wrong_data=(GMM, MNIST)),
    ],
    "detector": [
        CuratorCase({"name": "detector", "b": 2.0, "pool": 2},
                    bad=({"name": "detector", "b": -1}, {"name": "detector", "features": "lenet"},
                         {"name": "detector", "pool": 40})),
        CuratorCase({"name": "detector", "b": 1.0, "features": "linear", "replace": False, "pool": 1.5},
                    dataset=ROSEN),
    ],
}


def test_every_registered_curator_has_a_case():
    missing = [n for n in curator_names() if n not in CASES]
    assert not missing, f"add a CASES line for {missing} in tests/test_curator_contract.py"


class TestCuratorContract(CuratorContract):
    cases = [c for cases in CASES.values() for c in cases]
