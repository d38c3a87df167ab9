"""Shared fixtures: tiny specs, a CLI runner, and one local Ray instance per test session."""
from __future__ import annotations

import copy
import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")

# The contract kit as a pytest plugin: its fixture madlab_entry_point is available to every test file.
pytest_plugins = ["madlab.testing"]


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="torch device for the tests marked gpu (benchmarks/gpu_check.py passes cuda)")


@pytest.fixture
def device(request) -> str:
    """Where the tests marked ``gpu`` put their generators (``--device``, default cpu)."""
    return request.config.getoption("--device")


def gaussian_spec(**loop) -> dict:
    """A small valid spec on the 2-D Gaussian; ``loop`` overrides loop fields."""
    spec = {
        "name": "t",
        "seed": 0,
        "dataset": {"name": "gaussian", "dim": 2},
        "generator": {"name": "gaussian"},
        "loop": {"scheme": "fully-synthetic", "generations": 4, "n_real": 40, "n_synthetic": 40, "bias": 1.0},
        "metrics": {"k": 5},
    }
    spec["loop"].update(loop)
    return copy.deepcopy(spec)


@pytest.fixture
def spec_factory():
    return gaussian_spec


@pytest.fixture
def write_spec(tmp_path):
    import yaml

    def write(spec: dict, name: str = "spec.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec))
        return path

    return write


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from madlab.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by every test that needs it (start-up costs ~10 s here)."""
    import logging

    import ray

    if not ray.is_initialized():
        # address="local": always a fresh instance, never a cluster another process left running here
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (generator tests: fast and deterministic on 2 shared cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
