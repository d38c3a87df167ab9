"""GAN generator: architecture shapes, MAD's latent-truncation bias, penalties, warm start, quality (slow)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from madlab_generators.gan import Critic, DCFeatures, DCGenerator, GANGenerator
from madlab.errors import ConfigError
from madlab.samples import Samples

from fp import float32_rtol


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_clusters(n=128, seed=0):
    rng = np.random.default_rng(seed)
    centre = np.where(rng.integers(0, 2, n) == 1, 3.0, -3.0)[:, None]
    return Samples((centre + 0.2 * rng.standard_normal((n, 2))).astype(np.float32))


def tiny_gan(**kw):
    params = dict(width=16, depth=2, latent_dim=2, steps=20, batch_size=32)
    params.update(kw)
    return GANGenerator(GANGenerator.Params(**params), data_shape=(2,))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 12, 20)])
def test_dcgan_shapes(shape):
    G, D = DCGenerator(8, shape, 4), Critic(DCFeatures(shape, 4), num_classes=3)
    x = G(torch.randn(5, 8))
    assert x.shape == (5,) + shape and x.abs().max() <= 1
    assert D(x, torch.tensor([0, 1, 2, 0, 1])).shape == (5,)


def test_unsupported_image_size_is_a_config_error():
    with pytest.raises(ConfigError, match="7x7"):
        GANGenerator(GANGenerator.Params(), data_shape=(1, 7, 7))


@pytest.mark.fp_exact
def test_bias_is_latent_variance():
    """MAD's GAN bias: z ~ N(0, λI), so the generator's input has variance λ."""
    gen = tiny_gan(steps=1, ema=0.0)  # sample from gen.G itself (the cpu preset averages it)
    gen.fit(two_clusters(), seed=0)
    seen = []
    gen.G.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    assert gen.classes is None
    for bias in (1.0, 0.25):
        seen.clear()
        gen.sample(3000, bias=bias, seed=1)
        z = torch.cat(seen)
        assert z.var().item() == pytest.approx(bias, rel=0.05)
    same = gen.sample(10, bias=0.0, seed=1).x
    # Ten copies of the mean latent through one float32 network call: rows of a batch may take different
    # SIMD paths (vector body vs remainder), so they agree to float32 rounding (fp.float32_rtol: the longest
    # dot product has width = 16 terms; a condition factor of 10 bounds the 2-layer MLP's amplification).
    tol = float32_rtol(terms=16, condition=10.0) * max(1.0, np.abs(same).max())
    np.testing.assert_allclose(same, np.repeat(same[:1], 10, 0), rtol=0, atol=tol)


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic():
    critic = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.6, 0.8]]))
    D = lambda x: critic(x).squeeze(1)  # noqa: E731
    real, fake, g = torch.randn(16, 2), torch.randn(16, 2), torch.Generator().manual_seed(0)
    assert GANGenerator._gradient_penalty(D, real, fake, g).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic.weight.mul_(2)
    assert GANGenerator._gradient_penalty(D, real, fake, g).item() == pytest.approx(1.0, rel=1e-5)
    assert GANGenerator._r1_penalty(D, real).item() == pytest.approx(4.0, rel=1e-5)


def test_packing_groups_samples():
    seen = []

    class Probe(torch.nn.Module):
        dim = 8

        def forward(self, x):
            seen.append(x.clone())
            return x

    critic = Critic(Probe(), pac=4)
    critic(torch.arange(16.0).reshape(8, 2))
    assert seen[0].shape == (2, 8) and seen[0][1].tolist() == list(range(8, 16))
    with pytest.raises(ConfigError, match="pac"):
        tiny_gan(pac=64)


def test_conditional_images_get_balanced_labels_and_follow_them():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    x = np.where(y[:, None, None, None] == 1, 0.8, -0.8) + 0.05 * rng.standard_normal((64, 1, 8, 8))
    gen = GANGenerator(GANGenerator.Params(width=8, latent_dim=4, steps=150, batch_size=32, lr=2e-3, ema=0.0),
                       data_shape=(1, 8, 8), num_classes=2)
    assert gen.classes == 2
    gen.fit(Samples(x.astype(np.float32), y), seed=0)
    out = gen.sample(200, bias=1.0, seed=0)
    assert np.bincount(out.y).tolist() == [100, 100]
    brightness = out.x.mean(axis=(1, 2, 3))
    assert brightness[out.y == 1].mean() > brightness[out.y == 0].mean() + 0.5
    with pytest.raises(ValueError, match="labelled"):
        GANGenerator(gen.params, data_shape=(1, 8, 8), num_classes=2).fit(Samples(x.astype(np.float32)), seed=0)


def test_warm_start_continues_training():
    first = tiny_gan(steps=5)
    first.fit(two_clusters(), seed=0)
    state = {k: v.clone() for k, v in first.state_dict().items()}
    second = tiny_gan(steps=5)
    second.load_state_dict(state)
    assert int(second.opt_G.state_dict()["state"][0]["step"]) == 5
    second.fit(two_clusters(seed=1), seed=1)
    assert int(second.opt_G.state_dict()["state"][0]["step"]) == 10
    assert not torch.equal(second.G.net[0].weight, state["G.net.0.weight"])
    # exact: a stored statistic, copied, not recomputed
    np.testing.assert_array_equal(second.data_mean.numpy(), state["data_mean"].numpy())


@pytest.mark.slow
def test_gmm25_modes_at_cpu_preset():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from check_quality import vector_check

    result = vector_check("gan", {"preset": "cpu"}, n_train=1000, n_eval=5000, seed=0)
    assert result["modes@1.0"] >= 20, result


@pytest.mark.slow
def test_mnist5k_quality_at_cpu_preset():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from check_quality import image_check

    result = image_check("gan", {"preset": "cpu"}, n_train=5000, n_eval=2000, seed=0)
    assert result["fid_ratio"] <= 0.2 and result["min_digit_share"] >= 0.03, result
