"""The CUDA-only branches of the neural generators, run on CPU before any GPU does.

bf16 autocast and ``torch.compile`` are taken only on CUDA in normal use; ``MADLAB_GPU_PATHS_ON_CPU=1``
takes them on CPU too (torch supports both there), and ``MADLAB_COMPILE_BACKEND=aot_eager`` traces
the same dynamo + AOT-autograd graphs without inductor's C++ build (the one inductor test is slow).
What must hold: training and sampling run under both, a compiled or autocast model's checkpoint loads
into a plain model and back bit for bit, EMA weights travel with it, and every neural generator has a
``gpu`` preset between ``cpu`` and ``paper``.

With ``--device cuda`` (tests/conftest.py) the same tests run on a GPU with the real branches.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from madlab.registry import get_generator_class
from madlab.testing import tiny_data
from madlab_generators import _torch as T
from test_generator_contract import CASES

pytestmark = pytest.mark.gpu
NEURAL = ["gan", "flow", "ddpm"]
#: the UNet and Glow image cases take ~30 s each to trace on a loaded CPU: slow
SLOW_CASES = {("ddpm", 1), ("flow", 1)}
CASE_IDS = [pytest.param(name, i, id=f"{name}-{i}-{CASES[name][i].id}",
                         marks=[pytest.mark.slow] if (name, i) in SLOW_CASES else [])
            for name in NEURAL for i in range(len(CASES[name]))]


@pytest.fixture
def gpu_paths_on_cpu(monkeypatch):
    monkeypatch.setenv(T.GPU_PATHS_ON_CPU_ENV, "1")
    monkeypatch.setenv(T.COMPILE_BACKEND_ENV, "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def build(name, case, device, **overrides):
    cls = get_generator_class(name)
    params = cls.Params.model_validate({**case.params, **overrides})
    return cls(params, data_shape=case.shape, num_classes=case.num_classes, device=device)


def test_branches_are_off_on_cpu_unless_forced(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(T.GPU_PATHS_ON_CPU_ENV, raising=False)
    assert not T.gpu_paths(cpu) and T.gpu_paths(torch.device("cuda"))
    module = torch.nn.Linear(2, 2)
    assert T.maybe_compile(module, cpu, True) is module
    with T.autocast(cpu, True):
        assert module(torch.randn(1, 2)).dtype == torch.float32
    monkeypatch.setenv(T.GPU_PATHS_ON_CPU_ENV, "1")
    monkeypatch.setenv(T.COMPILE_BACKEND_ENV, "aot_eager")
    compiled = T.maybe_compile(module, cpu, True)
    assert compiled is not module and T.unwrap(compiled) is module
    with T.autocast(cpu, True):
        assert compiled(torch.randn(1, 2)).dtype == torch.bfloat16
    with T.autocast(cpu, False):
        assert module(torch.randn(1, 2)).dtype == torch.float32


def test_compiled_state_dict_loads_into_a_plain_module_and_back(gpu_paths_on_cpu):
    cpu = torch.device("cpu")
    with T.seeded(0):
        net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    compiled = T.maybe_compile(net, cpu, True)
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())  # what a naive save would write
    x = torch.randn(16, 3, generator=T.torch_generator(1))
    compiled.train()
    compiled(x).sum().backward()  # moves the BatchNorm running stats
    state = T.module_state("net", compiled)
    assert set(state) == {f"net.{k}" for k in net.state_dict()}
    with T.seeded(5):
        plain = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    T.load_module_state("net", plain, state)
    plain.eval(), compiled.eval()
    # exact: same path — both are eager modules with the same weights (net is the compiled wrapper's original)
    assert torch.equal(plain(x), net(x))
    with T.seeded(7):
        other = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    recompiled = T.maybe_compile(other, cpu, True)
    T.load_module_state("net", recompiled, T.module_state("net", plain))  # and back into a compiled one
    recompiled.eval()
    assert torch.allclose(recompiled(x), net(x), atol=1e-6)


def test_ema_of_a_compiled_module_tracks_and_round_trips(gpu_paths_on_cpu):
    cpu = torch.device("cpu")
    with T.seeded(0):
        net = torch.nn.Linear(4, 4)
    ema = T.EMA(net, 0.5)
    compiled = T.maybe_compile(net, cpu, True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(3):
        with T.autocast(cpu, True):
            loss = compiled(torch.ones(2, 4)).float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(net)
    averaged = ema.module.weight
    assert not torch.equal(averaged, net.weight)  # lags the trained weights
    restored = T.EMA(torch.nn.Linear(4, 4), 0.5)
    restored.load_state_dict(ema.state_dict())
    # exact: a state_dict copy of the averaged weights
    assert torch.equal(restored.module.weight, averaged)


@pytest.mark.parametrize("name,index", CASE_IDS)
def test_amp_and_compile_train_sample_and_round_trip(gpu_paths_on_cpu, device, name, index):
    """Fit under bf16 autocast + compile; the checkpoint loads into a plain (uncompiled) generator."""
    case = CASES[name][index]
    data = tiny_data(case)
    fast = build(name, case, device, amp=True, compile=True)
    fast.fit(data, seed=0)
    out = fast.sample(32, bias=1.0, seed=1)
    assert out.x.dtype == np.float32 and out.x.shape == (32,) + case.shape and np.isfinite(out.x).all()
    state = fast.state_dict()
    assert not any("_orig_mod" in k for k in state)

    plain = build(name, case, device, amp=True, compile=False)
    plain.load_state_dict(state)
    for key, value in plain.state_dict().items():
        # exact: a state_dict round trip copies tensors
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(state[key])), key
    again = plain.sample(32, bias=1.0, seed=1)  # same weights, same noise; compiled vs eager bf16 rounding only
    assert np.abs(again.x - out.x).max() <= 0.1
    if out.y is not None:
        # exact: integer labels drawn from the same seed
        assert np.array_equal(again.y, out.y)

    back = build(name, case, device, amp=True, compile=True)  # and back into a compiled one, which trains on
    back.load_state_dict(plain.state_dict())
    back.fit(data, seed=2)
    assert np.isfinite(back.sample(8, bias=1.0, seed=3).x).all()


@pytest.mark.parametrize("name", NEURAL)
def test_autocast_really_runs_in_bf16(gpu_paths_on_cpu, device, name, monkeypatch):
    """The forced branch is the real one: the model's matmuls see bf16 inputs under autocast."""
    case = CASES[name][0]
    gen = build(name, case, device, amp=True)
    seen = []
    original = torch.nn.Linear.forward

    def spy(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", spy)
    gen.fit(tiny_data(case), seed=0)
    assert torch.bfloat16 in seen
    seen.clear()
    monkeypatch.delenv(T.GPU_PATHS_ON_CPU_ENV)
    build(name, case, device, amp=True).fit(tiny_data(case), seed=0)
    if torch.device(device).type == "cpu":
        assert seen and torch.bfloat16 not in seen  # off on CPU by default


@pytest.mark.parametrize("name", NEURAL)
def test_every_neural_generator_has_a_gpu_preset_between_cpu_and_paper(name):
    params_cls = get_generator_class(name).Params
    assert params_cls.model_validate({"preset": "gpu"}).preset == "gpu"
    for kind in ("image", "vector"):
        cpu, gpu, paper = (params_cls.PRESETS[p][kind] for p in ("cpu", "gpu", "paper"))
        length = {"steps", "epochs"}  # a preset may count training in either
        assert set(gpu) - length == set(cpu) - length == set(paper) - length and set(gpu) & length
        widths = [k for k in gpu if k in ("width", "hidden", "channels")]  # model size, not training length
        assert widths
        assert all(_size(cpu[k]) <= _size(gpu[k]) <= _size(paper[k]) for k in widths), (name, kind)
        if any(_size(cpu[k]) < _size(paper[k]) for k in widths):
            assert any(_size(cpu[k]) < _size(gpu[k]) for k in widths), f"{name}/{kind}: gpu preset no bigger than cpu"
        params_cls.model_validate({"preset": "gpu"}).resolved(kind)


def _size(value):
    return sum(value) if isinstance(value, (tuple, list)) else value


@pytest.mark.slow
def test_inductor_compiles_a_gan_on_cpu(monkeypatch, device):
    """The default backend itself (C++ codegen on CPU, Triton on CUDA): minutes on a loaded CPU."""
    monkeypatch.setenv(T.GPU_PATHS_ON_CPU_ENV, "1")
    monkeypatch.delenv(T.COMPILE_BACKEND_ENV, raising=False)
    torch._dynamo.reset()
    case = CASES["gan"][1]
    gen = build("gan", case, device, amp=True, compile=True)
    gen.fit(tiny_data(case), seed=0)
    assert np.isfinite(gen.sample(16, bias=1.0, seed=1).x).all()
