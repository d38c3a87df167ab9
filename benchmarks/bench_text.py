"""Text generators: gpt's loop overhead vs a bare PyTorch loop, KV-cache sampling throughput, and
the text metrics' share of a generation.

1. Training: the same GPT (built by the plugin, same hyper-parameters) trained for the same number
   of steps on the same pydoc-text documents, once through ``GPTGenerator.fit`` and once by a bare
   loop written by hand (``torch.randint`` batches, global RNG, constant lr). Alternating rounds
   after a warm-up; each side's fastest round is compared. Goal: overhead ≤ 5 %.
2. Sampling: tokens/s of ``GPTGenerator.sample`` (batched, KV cache) vs naive sampling that re-runs
   the full prefix each step without a cache (same model, same batch).
3. One generation of ``ngram`` and of ``gpt`` (cpu preset) on pydoc-text through ``Loop.step``, with
   the default metrics and with the text specs' metrics (the text-lm feature metrics too): seconds in
   data / fit / sample / metrics / publish, i.e. the text metrics' share, and the run's one-off metric
   set-up apart (the text-lm encoder: loaded from the cache, or trained on first use).

    python benchmarks/bench_text.py                 # cpu preset, 1 thread
    python benchmarks/bench_text.py --device cuda --preset gpu --steps 200

Timings on the shared 2-core dev machine are not measurements; re-run on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
import torch.nn.functional as F


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_training(args, dataset):
    from madlab_generators.gpt import GPTGenerator

    data = dataset.draw(args.docs, seed=0)
    params = GPTGenerator.Params(preset=args.preset, steps=args.steps)

    def through_madlab():
        gen = GPTGenerator(params, data_shape=dataset.shape, vocab_size=dataset.vocab_size, device=args.device)
        _sync(gen.torch_device)
        t = time.perf_counter()
        gen.fit(data, seed=0)
        _sync(gen.torch_device)
        return time.perf_counter() - t

    def bare():
        gen = GPTGenerator(params, data_shape=dataset.shape, vocab_size=dataset.vocab_size, device=args.device)
        gen._ensure_built(0)
        model, opt, p, dev = gen.model, gen.optimizer, gen.p, gen.torch_device
        inputs, targets = gen._inputs(data.x)
        inputs, targets = inputs.to(dev), targets.to(dev)
        model.train()
        _sync(dev)
        t = time.perf_counter()
        for _ in range(p.steps):
            idx = torch.randint(0, len(inputs), (p.batch_size,), device=dev)
            logits = model(inputs[idx])
            loss = F.cross_entropy(logits.flatten(0, 1), targets[idx].flatten(), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            opt.step()
        _sync(dev)
        return time.perf_counter() - t

    through_madlab(), bare()  # warm-up
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(through_madlab())
        theirs.append(bare())
    return {"madlab_fit_s": min(ours), "bare_s": min(theirs), "overhead": min(ours) / min(theirs) - 1,
            "rounds_madlab": ours, "rounds_bare": theirs}


def bench_sampling(args, dataset):
    from madlab_generators.gpt import GPTGenerator, _filtered_probs

    gen = GPTGenerator(GPTGenerator.Params(preset=args.preset, steps=5), data_shape=dataset.shape,
                       vocab_size=dataset.vocab_size, device=args.device)
    gen.fit(dataset.draw(64, seed=0), seed=0)
    t = time.perf_counter()
    x = gen.sample(args.sample_rows, bias=1.0, seed=1).x
    cached = time.perf_counter() - t
    tokens = int((x >= 0).sum())
    # naive: full forward over the growing prefix at every step (no cache), same number of positions
    model, dev = gen.model.eval(), gen.torch_device
    rows = min(args.sample_rows, gen.p.sample_batch)
    seq = torch.full((rows, 1), gen.vocab_size, dtype=torch.int64, device=dev)
    t = time.perf_counter()
    with torch.no_grad():
        for _ in range(dataset.max_tokens):
            probs = _filtered_probs(model(seq)[:, -1].double().cpu(), 1.0, None, None)
            nxt = torch.multinomial(probs, 1).to(dev)
            seq = torch.cat([seq, nxt], 1)
    naive = time.perf_counter() - t
    return {"kv_cache_tokens_per_s": tokens / cached, "rows": args.sample_rows,
            "naive_positions_per_s": rows * dataset.max_tokens / naive,
            "kv_cache_positions_per_s": args.sample_rows * dataset.max_tokens / cached}


#: the metrics the text specs name (loops/text_*.yaml): lexical diversity, then the text-lm feature metrics
SPEC_METRICS = ["perplexity", "distinct_1", "distinct_2", "distinct_3", "distinct_4", "self_bleu", "unigram_entropy",
                "vocab_used", "tail_mass", "mean_length", "fid", "kid", "precision", "recall", "density", "coverage",
                "vendi"]
GENERATORS = {"ngram": {"name": "ngram", "order": 3, "add_k": 0.01}, "gpt": {"name": "gpt", "preset": "cpu"}}


def bench_generation(generator: str, names: list[str] | None):
    """Generation 2 of a fully-synthetic loop on pydoc-text through ``Loop.step`` (generation 1 and the
    run's one-off metric set-up, timed apart as ``setup_s``: the real set's statistics and, with feature
    metrics, loading the cached text-lm encoder or training it on first use)."""
    from madlab.engine.loop import Loop
    from madlab.specs import build_spec

    spec = {"name": "bench", "dataset": {"name": "pydoc-text"}, "generator": GENERATORS[generator],
            "loop": {"scheme": "fully-synthetic", "generations": 2, "n_real": 1000, "n_synthetic": 1000},
            "metrics": {"n_eval": 200, **({"names": names} if names else {})}}
    config = build_spec(spec).runs[0].config
    with tempfile.TemporaryDirectory() as tmp:
        loop = Loop(config, f"{tmp}/run")
        start = time.perf_counter()
        loop.evaluator  # noqa: B018  (built once per run)
        setup = time.perf_counter() - start
        loop.run(until=1)
        record = loop.step(2)
    seconds = record["seconds"]
    total = sum(seconds.values())
    return {"seconds": seconds, "metrics_share": seconds["metrics"] / total, "setup_s": setup}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-rows", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--generations", default="ngram,gpt",
                        help="generators whose one generation is timed with the lexical and the spec metrics")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from madlab.datasets import get_dataset_class

    cls = get_dataset_class("pydoc-text")
    dataset = cls(cls.Params())
    out = {"training": bench_training(args, dataset), "sampling": bench_sampling(args, dataset)}
    tr, sa = out["training"], out["sampling"]
    print(f"gpt fit ({args.steps} steps): madlab {tr['madlab_fit_s']:.2f} s, bare {tr['bare_s']:.2f} s, "
          f"overhead {100 * tr['overhead']:+.1f} % (goal <= 5 %)")
    print(f"gpt sampling: {sa['kv_cache_tokens_per_s']:.0f} tokens/s with the KV cache; positions/s "
          f"{sa['kv_cache_positions_per_s']:.0f} (cache) vs {sa['naive_positions_per_s']:.0f} (no cache)")
    for generator in [g for g in args.generations.split(",") if g]:
        for label, names in (("default metrics", None), ("the specs' metrics", SPEC_METRICS)):
            ge = out[f"{generator}_generation_{'spec' if names else 'default'}"] = bench_generation(generator, names)
            print(f"{generator} generation on pydoc-text, {label}: "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in ge["seconds"].items())
                  + f"; metrics share {100 * ge['metrics_share']:.0f} %; once per run {ge['setup_s']:.2f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
