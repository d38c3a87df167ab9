"""``madlab profile | compare | threshold | metrics``: the commands of :mod:`madlab.analysis`.

Like :mod:`madlab.cli`, this module imports only the standard library at the top so ``madlab --help`` stays
instant; each command imports its machinery when it runs.
"""
from __future__ import annotations

import sys

COMMANDS = ("profile", "compare", "threshold", "metrics")


def _pairs(parser, flag, help_text):
    parser.add_argument(flag, action="append", default=[], metavar="KEY=VALUE", help=help_text)


def add_parsers(sub) -> None:
    _profile_parser(sub)
    _compare_parser(sub)
    _threshold_parser(sub)
    metrics = sub.add_parser("metrics", help="what each metric means: definition, range, worse direction, collapse "
                                             "definition (Schaeffer et al. 2025)")
    metrics.add_argument("--kind", choices=("vector", "image", "tokens"))
    metrics.add_argument("--markdown", action="store_true", help="print docs/metrics.md (the whole table)")


def _profile_parser(sub) -> None:
    profile = sub.add_parser("profile", help="collapse profile per arm and metric: rate, first crossing of a level, "
                                             "stationary level and flattening, 95%% intervals over seeds")
    profile.add_argument("dir", help="results folder")
    profile.add_argument("--metric", action="append", help="metric(s) (default: every described metric present)")
    _pairs(profile, "--level", "crossing level per metric: w2=0.5 (a value) or w2=20%% (worse than generation 1; "
                               "default 10%%)")
    _pairs(profile, "--where", "keep runs with COLUMN=VALUE, e.g. --where bias=0.8")
    _pairs(profile, "--worse", "direction that means worse for a metric the table lacks: mymetric=higher")
    profile.add_argument("--window", type=int, help="generations of the stationary window (default: last third, >= 3)")
    profile.add_argument("--rate-window", help="generations the rate is fitted on, FIRST-LAST (default: all)")
    _common(profile)


def _compare_parser(sub) -> None:
    compare = sub.add_parser("compare", help="paired comparison of arms that differ in one setting, over shared "
                                             "seeds: difference with 95%% t interval and exact sign-flip p")
    compare.add_argument("dir", help="results folder")
    compare.add_argument("--by", required=True, help="the column the arms differ in (scheme, bias, a sweep axis)")
    compare.add_argument("--a", help="value of --by for arm a (default: every pair of values)")
    compare.add_argument("--b", help="value of --by for arm b")
    compare.add_argument("--metric", action="append", help="metric(s) (default: every described metric present)")
    compare.add_argument("--at", type=int, action="append", default=[], metavar="T",
                         help="generation(s) to compare at (default: the last)")
    compare.add_argument("--quantity", action="append", help="value, rate, stationary (default: all)")
    _pairs(compare, "--where", "keep runs with COLUMN=VALUE, e.g. --where bias=0.8")
    _pairs(compare, "--worse", "direction that means worse for a metric the table lacks: mymetric=higher")
    compare.add_argument("--window", type=int, help="generations of the stationary window (default: last third)")
    _common(compare)


def _threshold_parser(sub) -> None:
    threshold = sub.add_parser("threshold", help="find where a criterion flips along one loop setting, by adaptive "
                                                 "bisection over ordinary runs; answer with a confidence interval")
    threshold.add_argument("config", help="loop spec (YAML) describing one arm (other sweep axes fixed)")
    threshold.add_argument("--setting", required=True, help="dotted loop setting, e.g. loop.bias, loop.n_synthetic")
    threshold.add_argument("--range", nargs=2, type=float, required=True, metavar=("LOW", "HIGH"))
    threshold.add_argument("--metric", required=True)
    threshold.add_argument("--within", help="criterion: the last-window mean stays within EPS (0.1 or 10%%) of "
                                            "generation 1's (the real-only fit) in the worse direction")
    threshold.add_argument("--level", type=float, help="criterion: the last-window mean stays on the good side of L")
    threshold.add_argument("--window", type=int, default=5, help="last generations averaged (default 5)")
    threshold.add_argument("--worse", choices=("higher", "lower"), help="for a metric the table lacks")
    threshold.add_argument("--integer", action="store_true", help="integer setting (default: if both ends are)")
    threshold.add_argument("--tol", type=float, help="stop when the interval is this narrow (default range/64, 1)")
    threshold.add_argument("--seeds", type=int, default=8, help="seeds per probe to start with (default 8)")
    threshold.add_argument("--max-seeds", type=int, default=64, help="seeds are doubled up to this (default 64)")
    threshold.add_argument("--scan", type=int, default=5, help="evenly spaced first probes (default 5)")
    threshold.add_argument("--no-futility", action="store_true", help="double a bisection probe's seeds up to "
                           "--max-seeds even where that would very likely leave it undecided")
    threshold.add_argument("--alpha", type=float, default=0.05, help="1 - confidence of the interval (default 0.05)")
    threshold.add_argument("--out", help="search folder (default results/threshold-<spec>-<setting>)")
    threshold.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    threshold.add_argument("--preset")
    threshold.add_argument("--no-ray", action="store_true", help="run the probes in this process")
    threshold.add_argument("--address", help="Ray cluster address (default: one local Ray instance for all probes)")


def _common(parser) -> None:
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--csv", help="also write the tidy frame to this CSV file")


def dispatch(args, argv) -> int:
    return {"profile": _profile, "compare": _compare, "threshold": _threshold, "metrics": _metrics}[args.command](args)


def _mapping(items: list[str], flag: str) -> dict:
    from madlab.core.errors import ConfigError

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _show(frame, csv: str | None) -> None:
    import pandas as pd

    from madlab.core.files import atomic_write_bytes

    if csv:
        atomic_write_bytes(csv, frame.to_csv(index=False).encode())
    shown = frame.drop(columns=[c for c in ("method",) if c in frame]).copy()
    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.max_colwidth", 40,
                           "display.float_format", "{:.4g}".format):
        print(shown.to_string(index=False))
    if "method" in frame and len(frame):
        print("\nmethods:")
        for method in dict.fromkeys(frame["method"].dropna()):
            print(f"  - {method}")


def _check_confidence(value: float) -> None:
    from madlab.core.errors import ConfigError

    if not 0 < value < 1:
        raise ConfigError(f"--confidence {value}: must be in (0, 1)")


def _profile(args) -> int:
    from madlab.analysis.profile import collapse_profile, definitions_used
    from madlab.core.errors import ConfigError

    _check_confidence(args.confidence)
    window = None
    if args.rate_window:
        try:
            first, last = (int(v) for v in args.rate_window.split("-"))
        except ValueError:
            raise ConfigError(f"--rate-window {args.rate_window!r}: expected FIRST-LAST, e.g. 2-10") from None
        window = (first, last)
    frame = collapse_profile(args.dir, metrics=args.metric, levels=_mapping(args.level, "--level"),
                             where=_mapping(args.where, "--where"), confidence=args.confidence, rate_window=window,
                             window=args.window, worse=_mapping(args.worse, "--worse"))
    _show(frame, args.csv)
    used = definitions_used(frame)
    if used:
        print("\ncollapse definitions measured (Schaeffer et al. 2025, arXiv 2503.03150):")
        for key, meaning in used.items():
            print(f"  {key}: {meaning}")
    return 0


def _compare(args) -> int:
    from madlab.analysis.paired import compare

    _check_confidence(args.confidence)
    frame = compare(args.dir, by=args.by, a=args.a, b=args.b, where=_mapping(args.where, "--where"),
                    metrics=args.metric, generations=args.at, quantities=args.quantity, confidence=args.confidence,
                    window=args.window, worse=_mapping(args.worse, "--worse"))
    _show(frame, args.csv)
    return 0


def _metrics(args) -> int:
    from madlab.analysis.metric_info import COLLAPSE_DEFINITIONS, metric_table, metrics_markdown

    if args.markdown:
        print(metrics_markdown(), end="")
        return 0
    table = metric_table()
    if args.kind:
        table = table[table["kinds"].str.contains(args.kind)]
    for row in table.itertuples(index=False):
        print(f"{row.metric:16s} {row.worse:6s} is worse  {row.range:12s} [{row.collapse}]\n{'':18s}{row.definition}")
    print("\ncollapse definitions (Schaeffer et al. 2025, arXiv 2503.03150):")
    for key, meaning in COLLAPSE_DEFINITIONS.items():
        print(f"  {key}: {meaning}")
    return 0


def _within(text: str | None) -> float | None:
    from madlab.core.errors import ConfigError

    if text is None:
        return None
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"--within {text!r}: expected a number such as 0.1 or 10%") from None
    if value < 0:
        raise ConfigError(f"--within {text}: must be >= 0")
    return value


def _threshold(args) -> int:
    import json
    from pathlib import Path

    from madlab.analysis.probes import RunProbes
    from madlab.analysis.threshold import Criterion, search_threshold
    from madlab.core.errors import ConfigError
    from madlab.core.files import atomic_write_json, atomic_write_table

    criterion = Criterion(args.metric, window=args.window, within=_within(args.within), level=args.level,
                          worse=args.worse)
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha {args.alpha}: must be in (0, 1)")
    lo, hi = args.range
    integer = args.integer or (lo == int(lo) and hi == int(hi) and args.setting.split(".")[-1].startswith("n_"))
    out = Path(args.out or f"results/threshold-{Path(args.config).stem}-{args.setting.split('.')[-1]}")
    log = lambda message: print(f"[madlab] {message}", flush=True)  # noqa: E731
    probes = RunProbes(args.config, args.setting, criterion, str(out), overrides=args.overrides, preset=args.preset,
                       integer=integer, use_ray=not args.no_ray, address=args.address, log=log)
    probes.check(lo, hi, args.seeds)  # bad input: one line, exit 2, before anything runs
    result = search_threshold(probes, lo, hi, setting=args.setting, criterion=criterion.describe(), integer=integer,
                              tol=args.tol, alpha=args.alpha, seeds=args.seeds, max_seeds=args.max_seeds,
                              scan=args.scan, futility=not args.no_futility, on_probe=lambda frame: atomic_write_table(out / "probes.parquet", frame))
    atomic_write_table(out / "probes.parquet", result.probes)
    answer = {k: (None if isinstance(v, float) and v != v else v) for k, v in result.summary().items()}  # NaN: null
    atomic_write_json(out / "threshold.json", json.loads(json.dumps(answer, default=str)))
    from madlab.report.threshold_figure import threshold_figure

    figure = threshold_figure(result, out / "threshold")[0]
    _show(result.probes, None)
    print(f"\ncriterion: {result.criterion}")
    print(result.describe())
    print(f"method: {result.method}")
    print(f"[madlab] probes: {out / 'probes.parquet'}, answer: {out / 'threshold.json'}, figure: {figure}",
          file=sys.stderr)
    return 0 if result.status in ("found", "noise-limited") else 1
