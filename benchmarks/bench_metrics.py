"""Cost of madlab's seven image metrics vs torch-fidelity's FID + KID + PR alone.

Goal (issue 3): on 10,000 real vs 10,000 fake MNIST-sized images, madlab's evaluator computing
all seven metrics (fid, kid, precision, recall, density, coverage, vendi), feature extraction
included, costs no more than ``torch_fidelity.calculate_metrics(fid=True, kid=True, prc=True)``
on the same images with the same extractor (``lenet-mnist``). Both are measured in this run,
interleaved, best of ``--repeats``; the printed ratio is madlab / torch-fidelity (goal <= 1.0).
Also printed: a later generation, when the real features and statistics are already cached.

Real images: MNIST's t10k test split when found (see ``find_mnist_test_dir``), else the 5,000
mnist5k digits and their copies shifted by one pixel. Fake images: mnist5k digits with pixel
noise, and shifted noisy copies, standing in for a generator's output.

    python benchmarks/bench_metrics.py [--n 10000] [--repeats 2] [--batch-size 500]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import torch


class _Images(torch.utils.data.Dataset):
    """uint8 tensors, the input torch-fidelity expects from a Dataset."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = torch.from_numpy(np.ascontiguousarray(pixels))

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, i):
        return self.pixels[i]


def _images(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    from madlab.datasets.images import load_idx_split, load_mnist5k
    from madlab.features.feature_extractor_lenet import find_mnist_test_dir

    digits, _ = load_mnist5k()
    shifted = np.roll(digits, 1, axis=3)
    rng = np.random.default_rng(0)
    noisy = np.concatenate([digits, np.roll(digits, -1, axis=2)]).astype(np.int16)
    noisy = np.clip(noisy + rng.normal(0, 25, noisy.shape), 0, 255).astype(np.uint8)
    folder = find_mnist_test_dir()
    if folder is not None:
        real, source = load_idx_split(folder, "t10k")[0], "MNIST t10k"
    else:
        real, source = np.concatenate([digits, shifted]), "mnist5k + 1px-shifted copies"
    reps = -(-n // len(real))
    real = np.concatenate([real] * reps)[:n]
    fake = np.concatenate([noisy] * (-(-n // len(noisy))))[:n]
    return real, fake, source


def bench_torch_fidelity(real, fake, k, batch_size):
    import torch_fidelity

    import madlab.features  # noqa: F401  (registers lenet-mnist in torch-fidelity)

    start, cpu = time.perf_counter(), time.process_time()
    out = torch_fidelity.calculate_metrics(
        input1=_Images(fake), input2=_Images(real), fid=True, kid=True, prc=True, feature_extractor="lenet-mnist",
        prc_neighborhood=k, cuda=False, cache=False, verbose=False, batch_size=batch_size)
    return time.perf_counter() - start, time.process_time() - cpu, out


def bench_madlab(real, fake, k, batch_size):
    from madlab.core.samples import Samples
    from madlab.metrics.images import ImageEvaluator

    cfg = SimpleNamespace(k=k, n_eval=None, names=None, extractor="lenet-mnist", weights_path=None,
                          kid_subset_size=1000, device="cpu")
    dataset = SimpleNamespace(name="mnist5k")
    with tempfile.TemporaryDirectory() as cache:
        start, cpu = time.perf_counter(), time.process_time()
        evaluator = ImageEvaluator(dataset, cfg, Samples(real), cache_dir=cache, device="cpu")
        first = evaluator(Samples(fake))
        first_s, first_cpu = time.perf_counter() - start, time.process_time() - cpu
        start = time.perf_counter()
        later = evaluator(Samples(fake[::-1].copy()))
        later_s = time.perf_counter() - start
    same_set = [m for m in first if m != "kid"]  # KID's random subsets depend on the row order
    assert np.allclose([first[m] for m in same_set], [later[m] for m in same_set], rtol=1e-3, atol=2e-3)
    return first_s, first_cpu, later_s, first


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    from madlab.features.feature_extractor_lenet import ensure_lenet_weights

    ensure_lenet_weights(verbose=True)  # training once is not part of either measurement
    real, fake, source = _images(args.n)
    tf_times, tf_cpu, first_times, first_cpu, later_times = [], [], [], [], []
    for _ in range(args.repeats):
        t, c, tf_out = bench_torch_fidelity(real, fake, args.k, args.batch_size)
        tf_times.append(t)
        tf_cpu.append(c)
        first, c, later, ours = bench_madlab(real, fake, args.k, args.batch_size)
        first_times.append(first)
        first_cpu.append(c)
        later_times.append(later)
    report = {
        "images": f"{args.n} real ({source}) vs {args.n} fake, 1x28x28, extractor lenet-mnist, k={args.k}",
        "torch_threads": torch.get_num_threads(),
        "torch_fidelity_fid_kid_prc_s": round(min(tf_times), 2),
        "madlab_seven_metrics_first_generation_s": round(min(first_times), 2),
        "madlab_seven_metrics_later_generation_s": round(min(later_times), 2),
        "ratio_first_generation": round(min(first_times) / min(tf_times), 3),
        "ratio_later_generation": round(min(later_times) / min(tf_times), 3),
        "cpu_s_this_process": {"torch_fidelity": round(min(tf_cpu), 2), "madlab_first": round(min(first_cpu), 2)},
        "all_wall_s": {"torch_fidelity": [round(t, 2) for t in tf_times],
                       "madlab_first": [round(t, 2) for t in first_times],
                       "madlab_later": [round(t, 2) for t in later_times]},
        "torch_fidelity": {"fid": tf_out["frechet_inception_distance"],
                           "kid": tf_out["kernel_inception_distance_mean"],
                           "precision": tf_out["precision"], "recall": tf_out["recall"]},
        "madlab": ours,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
