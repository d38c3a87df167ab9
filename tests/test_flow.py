"""Flow generator: invertibility of the normflows models, MAD's temperature bias, warm start, quality (slow)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from madlab_generators.flow import FlowGenerator, glow, realnvp, spline_flow
from madlab.samples import Samples

from fp import float32_rtol


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def perturb(module, seed=0):
    """Random weights everywhere (normflows zero-initialises coupling outputs, which would make
    the round trip trivially the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_realnvp_forward_inverse_round_trip():
    flow = realnvp(2, layers=4, hidden=16)
    x = torch.randn(64, 2)
    flow.inverse(x)  # ActNorm's data-dependent initialisation
    perturb(flow)
    z, log_det = flow.inverse_and_log_det(x)
    x_back, log_det_back = flow.forward_and_log_det(z)
    torch.testing.assert_close(x_back, x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log_det_back, -log_det, atol=1e-4, rtol=1e-4)


def test_spline_flow_forward_inverse_round_trip():
    flow = spline_flow(2, layers=4, hidden=16, bins=8)
    perturb(flow)
    x = 2 * torch.randn(64, 2)  # some points beyond the spline's tail bound (linear tails)
    z, log_det = flow.inverse_and_log_det(x)
    x_back, log_det_back = flow.forward_and_log_det(z)
    torch.testing.assert_close(x_back, x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(log_det_back, -log_det, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("options, blocks_per_level", [
    ({}, [2 + 1, 2 + 1]),
    # the soft-clamped exp coupling, logit pre-processing and extra coarsest-level blocks
    ({"logit": 0.05, "coupling": "exp", "top_blocks": 3}, [3 + 1, 2 + 1]),
])
def test_glow_forward_inverse_round_trip(options, blocks_per_level):
    model = glow((1, 8, 8), levels=2, blocks=2, hidden=8, **options)
    assert [len(level) for level in model.flows] == blocks_per_level  # blocks + squeeze; coarsest first
    x = torch.rand(16, 1, 8, 8)
    model.log_prob(x, None)
    perturb(model)
    z, log_det = model.inverse_and_log_det(x)
    assert [tuple(t.shape[1:]) for t in z] == [(8, 2, 2), (2, 4, 4)]
    x_back, log_det_back = model.forward_and_log_det(z)
    torch.testing.assert_close(x_back, x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(log_det_back, -log_det, atol=1e-3, rtol=1e-3)


def fitted_on_gaussian(epochs=3, coupling="spline"):
    rng = np.random.default_rng(0)
    data = Samples((np.array([1.0, -2.0]) + np.array([2.0, 0.5]) * rng.standard_normal((2000, 2))).astype(np.float32))
    params = FlowGenerator.Params(coupling=coupling, layers=2, hidden=16, epochs=epochs, batch_size=256)
    gen = FlowGenerator(params, data_shape=(2,))
    gen.fit(data, seed=0)
    return gen, data


@pytest.mark.fp_exact
@pytest.mark.parametrize("coupling", ["spline", "affine"])
def test_temperature_scales_the_spread(coupling):
    """MAD's flow bias: z ~ N(0, λI). On Gaussian data the fitted flow is near-affine, so the
    sample standard deviation scales by sqrt(λ) and λ = 0 maps every sample to one point."""
    gen, data = fitted_on_gaussian(coupling=coupling)
    full = gen.sample(4000, bias=1.0, seed=1).x
    np.testing.assert_allclose(full.std(0), data.x.std(0), rtol=0.15)
    np.testing.assert_allclose(full.mean(0), data.x.mean(0), atol=0.15)
    quarter = gen.sample(4000, bias=0.25, seed=1).x
    np.testing.assert_allclose(quarter.std(0) / full.std(0), [0.5, 0.5], rtol=0.15)
    point = gen.sample(5, bias=0.0, seed=1).x
    # Five copies of z = 0 through one float32 network call: rows of a batch may take different SIMD
    # paths (vector body vs remainder), so they agree to float32 rounding, not bit for bit. The longest
    # dot product has hidden = 16 terms; the fitted map stretches N(0, I) to the data's scales (2 and 0.5)
    # through 2 couplings, so a Lipschitz/condition factor of 10 bounds the amplification (fp.float32_rtol).
    tol = float32_rtol(terms=16, condition=10.0) * np.abs(point).max()
    np.testing.assert_allclose(point, np.repeat(point[:1], 5, 0), rtol=0, atol=tol)
    assert np.ptp(point, 0).max() < 1e-3 * full.std(0).min()  # a single point, not a spread


@pytest.mark.parametrize("coupling", ["spline", "affine"])
def test_log_prob_is_a_density(coupling):
    """The fitted density integrates to about 1 over a grid covering the data."""
    gen, _ = fitted_on_gaussian(coupling=coupling)
    xs, ys = np.linspace(-9, 11, 201), np.linspace(-5, 1, 121)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    with torch.no_grad():
        density = gen.log_prob(Samples(grid)).exp().numpy()
    mass = density.sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert mass == pytest.approx(1.0, abs=0.05)


def test_warm_start_keeps_training_from_the_loaded_weights():
    gen, data = fitted_on_gaussian(epochs=1)
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    fresh = FlowGenerator(gen.params, data_shape=(2,))
    fresh.load_state_dict(state)
    steps = int(state["opt.0.step"])
    fresh.fit(data, seed=1)
    assert int(fresh.opt.state_dict()["state"][0]["step"]) == 2 * steps
    # exact: a stored statistic, copied, not recomputed
    np.testing.assert_array_equal(fresh.data_std.numpy(), state["data_std"].numpy())


def test_image_samples_are_valid_images():
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(-0.5, 0.3, (32, 1, 8, 8)), -1, 1).astype(np.float32)
    gen = FlowGenerator(FlowGenerator.Params(layers=1, hidden=8, epochs=2, batch_size=16), data_shape=(1, 8, 8))
    gen.fit(Samples(x), seed=0)
    for bias in (1.0, 0.5):
        out = gen.sample(20, bias=bias, seed=0).x
        assert out.shape == (20, 1, 8, 8) and out.dtype == np.float32
        assert -1 <= out.min() and out.max() <= 1


@pytest.mark.slow
def test_gmm25_floor_at_cpu_preset():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from check_quality import vector_check

    result = vector_check("flow", {"preset": "cpu"}, n_train=1000, n_eval=5000, seed=0)
    assert result["pass"], result  # modes, precision and high-quality fraction floors


def test_n_bits_quantises_training_data_and_samples():
    """Glow's n_bits: pixels are quantised to 2^n_bits levels, dequantised within their bin for
    training, and samples are rounded back to those levels (only 2^n_bits distinct values)."""
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(-0.3, 0.6, (32, 1, 8, 8)), -1, 1).astype(np.float32)
    x = np.round((x + 1) * 127.5) / 127.5 - 1  # 8-bit pixels, as datasets deliver them
    params = FlowGenerator.Params(layers=1, hidden=8, epochs=2, batch_size=16, n_bits=2, coupling="exp",
                                  warmup=2, cosine=True)
    gen = FlowGenerator(params, data_shape=(1, 8, 8))
    gen.fit(Samples(x), seed=0)
    flow_x = gen._to_flow_space(torch.from_numpy(x), torch.Generator().manual_seed(0))
    k = np.floor((x + 1) * 127.5 / 64 + 1e-6)
    assert np.all(np.floor(flow_x.numpy() * 4) == k)
    levels = np.array([-1, -1 / 3, 1 / 3, 1], dtype=np.float32)
    for bias in (1.0, 0.5):
        out = gen.sample(200, bias=bias, seed=0).x
        assert np.abs(out[..., None] - levels).min(-1).max() < 1e-6
        assert 1 < len(np.unique(out)) <= 4
    # state round trip (with the step counter the warm-up uses) reproduces the samples
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    fresh = FlowGenerator(gen.params, data_shape=(1, 8, 8))
    fresh.load_state_dict(state)
    assert fresh.steps == gen.steps == 4
    # exact: same path — loaded weights are the saved bits; same seed and batch
    np.testing.assert_array_equal(fresh.sample(50, bias=1.0, seed=3).x, gen.sample(50, bias=1.0, seed=3).x)
