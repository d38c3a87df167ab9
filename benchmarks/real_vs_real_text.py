"""How optimistic the text real-vs-real level was, and whether its disjoint sample is biased.

pydoc-text holds out 324 documents and the text specs score 200. Over ``--draws`` reference sets of 200
held-out documents, the text-lm feature metrics of four "second real samples" against the reference:

- ``overlapping``: another draw of 200 from the same 324 (madlab before 2026-12-02; shares ~123);
- ``disjoint``: what ``Dataset.real_vs_real_set`` takes now, the other 124 held-out documents and 76
  training documents;
- ``held-out rest``: the 124 held-out documents alone (smaller, so its FID is biased up);
- ``training``: 200 training documents (which the encoder trained on).

It also prints the encoder's mean surprisal on held-out and on training documents: equal means the
encoder does not single out the documents it was trained on, so topping up with them is fair.

    python benchmarks/real_vs_real_text.py      # ~1 min on one thread, the encoder cached (else +~40 s)
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from madlab.datasets import get_dataset_class
from madlab.features.feature_extractor_text_lm import TextEncoder, ensure_text_lm
from madlab.metrics.feature import feature_metrics

NAMES = ("fid", "precision", "recall", "coverage", "density")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cls = get_dataset_class("pydoc-text")
    ds = cls(cls.Params(max_tokens=128))
    encoder = TextEncoder(ensure_text_lm(ds.encoder_corpus(), ds.tokenizer))
    n, rest = args.n, max(0, ds.heldout_size - args.n)
    results: dict[str, list[dict]] = {k: [] for k in ("overlapping", "disjoint", "held-out rest", "training")}
    for draw in range(args.draws):
        reference = encoder.features(ds.eval_set(n, seed=100 + draw).x)
        # madlab's sample: the rest of the held-out split first, then training documents
        disjoint = encoder.features(ds.real_vs_real_set(n, seed=draw, reference_seed=100 + draw)[0].x)
        samples = {"overlapping": encoder.features(ds.eval_set(n, seed=500 + draw).x), "disjoint": disjoint,
                   "held-out rest": disjoint[:rest], "training": encoder.features(ds.draw(n, seed=draw).x)}
        for name, x in samples.items():
            results[name].append(feature_metrics(reference, x, names=NAMES))
    print(f"pydoc-text, reference {n} of {ds.heldout_size} held-out documents, {args.draws} draws (mean ± sd):")
    for name, rows in results.items():
        print(f"  {name:14s} " + ", ".join(f"{m} {np.mean([r[m] for r in rows]):.3f} ± {np.std([r[m] for r in rows]):.3f}"
                                            for m in NAMES))
    held = encoder.features(ds.eval_set(ds.heldout_size, seed=0).x)
    train = encoder.features(ds.encoder_corpus())
    print(f"  mean surprisal (nats/token): held-out {held[:, -1].mean():.3f}, training {train[:, -1].mean():.3f}")


if __name__ == "__main__":
    main()
