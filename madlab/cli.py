"""Command line: ``madlab run | validate | report | track | generators``.

Bad input (a config, a dataset, a weights file) ends with one line on stderr and exit code 2,
before anything is written.

Each command imports what it needs inside :func:`_dispatch`: ``madlab generators`` and ``curators``
list the plugins from their sources without importing numpy, pydantic or torch (well under a second
of CPU, tests/test_plugin_index.py), which imports at the top of this module would undo.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from madlab.cli_analysis import (COMMANDS as ANALYSIS_COMMANDS, add_parsers as add_analysis_parsers,
                                 dispatch as analysis_dispatch)
from madlab.core.errors import MadlabError

EXIT_BAD_INPUT = 2
EXIT_RUNS_FAILED = 1


def _portable_arg(parser):
    parser.add_argument("--portable", action="store_true",
                        help="pin the CPU kernels (OpenBLAS, MKL, ATen, oneDNN) so the same run gives the same bits on "
                             "every x86-64 AVX2 (or every aarch64) CPU, e.g. across a heterogeneous cluster; a run "
                             "started with it resumes only with it")


def _spec_args(parser):
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (dotted), e.g. --set loop.bias=0.8; sweep.KEY=[...] sets a sweep axis")
    parser.add_argument("--preset", help="apply a named preset of the spec, e.g. cpu")


def _track_arg(parser):
    parser.add_argument("--track", action="append", default=[], metavar="NAME[=URI]",
                        help="feed an experiment tracker as the sweep runs: mlflow, tensorboard or wandb "
                             "(several allowed; adds to or replaces the spec's `tracking:`)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="madlab", description="Self-consuming generative loops (MAD) workbench")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) a loop spec; no CONFIG runs loops/quickstart.yaml")
    run.add_argument("config", nargs="?", help="loop spec (YAML)")
    run.add_argument("--out", help="results folder (default: the spec's `out`, else results/<name>)")
    _spec_args(run)
    run.add_argument("--address", help="Ray cluster address (e.g. auto); default: a local Ray instance")
    run.add_argument("--no-ray", action="store_true", help="run in this process, one run after another")
    run.add_argument("--workers", type=int, help="number of Ray worker actors (default: sized to the cluster)")
    _portable_arg(run)
    _track_arg(run)

    validate = sub.add_parser("validate", help="check a spec: exit 0, or 2 with a one-line reason; no CONFIG "
                                               "checks loops/quickstart.yaml")
    validate.add_argument("config", nargs="?", help="loop spec (YAML)")
    validate.add_argument("--out", help="also check that `madlab run --out DIR` could resume into this results "
                                        "folder (stored configs, library versions, text runs' tokenizers); writes nothing")
    _spec_args(validate)
    _portable_arg(validate)
    _track_arg(validate)

    report = sub.add_parser("report", help="draw the figures of a results folder")
    report.add_argument("dir", help="results folder, or an object-store URI (s3://..., gs://...)")
    report.add_argument("--local", help="for a URI: local folder to mirror the inputs into "
                                        "(default: $MADLAB_CACHE/reports/...)")

    track = sub.add_parser("track", help="send an existing results folder to an experiment tracker (back-fill)")
    track.add_argument("dir", help="results folder")
    track.add_argument("--to", action="append", required=True, metavar="NAME[=URI]",
                       help="mlflow, tensorboard or wandb (several allowed); URI as for `run --track`")

    sub.add_parser("generators", help="list installed generator plugins (madlab.generators entry points)")
    sub.add_parser("curators", help="list installed curator plugins (madlab.curators entry points)")
    add_analysis_parsers(sub)  # madlab profile | compare | threshold | metrics (madlab.analysis)
    return parser


def main(argv: list[str] | None = None) -> int:
    as_script = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "portable", False):
            from madlab.core.portable import is_portable, relaunch  # lazy: see the module docstring

            if not is_portable():  # the kernels are chosen when the libraries load: start afresh, pinned
                return relaunch(argv, replace=as_script)
        return _dispatch(args, argv)
    except MadlabError as exc:
        print(f"madlab: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _dispatch(args, argv) -> int:
    if args.command in ("generators", "curators"):
        return _list_plugins(args.command)
    if args.command in ANALYSIS_COMMANDS:
        return analysis_dispatch(args, argv)
    if args.command == "report":
        from madlab.report import make_report  # lazy: see the module docstring

        paths = make_report(args.dir, local_dir=args.local)
        print(f"wrote {len(paths)} files to {args.dir.rstrip('/')}/figures (index: {paths[-1]})")
        return 0
    if args.command == "track":
        from madlab.tracking.backfill import track_folder  # lazy: see the module docstring

        return track_folder(args.dir, args.to, stream=sys.stdout)

    from madlab.engine.theory import is_ess_spec  # lazy: see the module docstring

    if is_ess_spec(args.config or ""):
        return _ess(args, argv)

    from madlab.specs.ecosystem import is_ecosystem_spec  # lazy: see the module docstring

    if args.config and is_ecosystem_spec(args.config):
        return _ecosystem(args, argv)

    from madlab.specs import load_spec  # lazy: see the module docstring

    spec = load_spec(args.config, overrides=args.overrides, preset=args.preset,
                     out=getattr(args, "out", None))
    if args.track:
        from madlab.tracking import merge_targets, parse_targets  # lazy: see the module docstring

        spec.tracking = merge_targets(spec.tracking, parse_targets(args.track, spec.out, where="--track"))
    if args.command == "validate":
        return _validate(args, spec)

    from madlab.runner import Runner  # lazy: see the module docstring

    print(f"[madlab] {spec.path}: {len(spec.runs)} run(s) -> {args.out or spec.out}", flush=True)
    summary = Runner(spec, args.out, command="madlab " + shlex.join(argv), address=args.address,
                     use_ray=not args.no_ray, workers=args.workers).run()
    print(f"[madlab] done in {summary.seconds:.1f}s: {summary.runs - len(summary.failed)}/{summary.runs} runs ok")
    for outcome in summary.failed:
        print(f"[madlab] FAILED {outcome.run_id}: {outcome.error}")
    print(f"[madlab] table: {summary.table}")
    print(f"[madlab] figures: madlab report {summary.out_dir}")
    return EXIT_RUNS_FAILED if summary.failed else 0


def _ecosystem(args, argv) -> int:
    """A spec with a top-level ``ecosystem`` section: several generators feeding one another
    (madlab.runner.ecosystem); validated whole before anything is written."""
    from madlab.runner.ecosystem import EcoRunner, member_jobs  # lazy: see the module docstring
    from madlab.runner.faults import FAULT_ENV, parse_faults  # lazy: see the module docstring
    from madlab.runner.folder import check_resumable, results_location  # lazy: see the module docstring
    from madlab.specs.ecosystem import load_ecosystem_spec  # lazy: see the module docstring

    spec = load_ecosystem_spec(args.config, overrides=args.overrides, preset=args.preset,
                               out=getattr(args, "out", None))
    members = sum(len(e.members) for e in spec.runs)
    if args.command == "validate":
        if args.out:
            location = results_location(args.out)
            check_resumable(member_jobs(spec, location), location)
        print(f"ok: {spec.path}: {len(spec.runs)} ecosystem(s), {members} member run(s)")
        return 0
    fault = os.environ.get(FAULT_ENV) or None
    parse_faults(fault)
    print(f"[madlab] {spec.path}: {len(spec.runs)} ecosystem(s), {members} member run(s) -> {args.out or spec.out}",
          flush=True)
    summary = EcoRunner(spec, args.out, command="madlab " + shlex.join(argv), address=args.address,
                        use_ray=not args.no_ray, workers=args.workers, fault=fault).run()
    print(f"[madlab] done in {summary.seconds:.1f}s: {summary.runs - len(summary.failed)}/{summary.runs} member runs ok")
    for outcome in summary.failed:
        print(f"[madlab] FAILED {outcome.run_id}: {outcome.error}")
    print(f"[madlab] table: {summary.table}")
    return EXIT_RUNS_FAILED if summary.failed else 0


def _validate(args, spec) -> int:
    """``madlab validate``: the spec passed; with ``--out``, the folder can be resumed into."""
    resumable = ""
    if args.out:
        # lazy: see the module docstring
        from madlab.runner.folder import check_resumable, plan_jobs, results_location
        from madlab.store.storage import RUN_INFO

        location = results_location(args.out)
        check_resumable(plan_jobs(spec, location), location)
        resumable = f"; {args.out}: " + ("resumable" if location.exists(RUN_INFO) else "a new results folder")
    tracking = "; tracking: " + ", ".join(t.label() for t in spec.tracking) if spec.tracking else ""
    print(f"ok: {spec.path}: {len(spec.runs)} run(s), "
          f"{sum(r.config.loop.generations for r in spec.runs)} generation(s){resumable}{tracking}")
    return 0


def _ess(args, argv) -> int:
    """A spec with a top-level ``ess`` mapping is a Monte-Carlo study of the Gaussian fresh-real
    loop (MAD Figs. 11/12), not a loop: validate/run it with madlab.engine.theory."""
    from madlab.engine import theory  # lazy: see the module docstring

    if args.command == "validate":
        study = theory.validate_ess_spec(args.config, args.preset, args.overrides)
        print(f"ok: {args.config}: effective-sample-size study, {len(study.cells())} cell(s) x {study.reps} repetitions")
        return 0
    if getattr(args, "address", None):
        print("[madlab] note: an ess study runs in this process (vectorised numpy); --address is ignored",
              file=sys.stderr)
    out = theory.run_ess_spec(args.config, args.preset, args.overrides, args.out,
                              command="madlab " + shlex.join(argv))
    print(f"[madlab] figures: madlab report {out}")
    return 0


def _list_plugins(command: str) -> int:
    """List the plugins from their entry points and sources, importing none (no torch: well under a second)."""
    from madlab.plugins.index import GROUPS, installed_plugins  # lazy: see the module docstring

    for info in installed_plugins(GROUPS[command]):
        if info.problem:  # a broken plugin must not hide the others
            print(f"{info.name:12s} {'(broken)':14s} {info.target}  cannot load: {info.problem}")
            continue
        kinds = ",".join(info.data_kinds) if info.data_kinds else "?"
        print(f"{info.name:12s} {kinds:14s} {info.target}  {info.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
