"""Threshold-search probes as ordinary madlab runs.

A probe at setting value x with n seeds is the search's spec with ``--set SETTING=x`` and
``sweep.seed=[0..n-1]``, run by :class:`madlab.runner.Runner` into ``OUT/probes/SETTING=x/``.
So cache and resume apply: adding seeds to a probe runs only the new seeds, and re-running a
killed search replays its decisions from the runs already published (the search is
deterministic given them) and continues where it stopped. With Ray, every probe of a search
uses the one Ray instance the first probe starts (``Runner`` joins an initialised Ray).
"""
from __future__ import annotations

import io

import numpy as np

from madlab.analysis.curves import arm_curves, load
from madlab.analysis.threshold import Criterion
from madlab.core.errors import ConfigError, MadlabError
from madlab.runner import Runner
from madlab.specs import load_spec


class RunProbes:
    """``evaluate(x, n)`` for :func:`search_threshold`: the criterion's per-seed statistics of the
    spec's loop at ``setting = x``, seeds 0..n-1."""

    def __init__(self, spec_path, setting: str, criterion: Criterion, out: str, *, overrides=(), preset=None,
                 integer: bool = False, use_ray: bool = True, address: str | None = None, log=None):
        if setting == "seed" or setting.startswith("sweep."):
            raise ConfigError(f"--setting {setting}: must be a loop setting (a dotted config key), not the seed")
        self.spec_path, self.setting, self.criterion, self.out = spec_path, setting, criterion, str(out).rstrip("/")
        self.overrides, self.preset, self.integer = list(overrides), preset, integer
        self.use_ray, self.address, self.log = use_ray, address, log or (lambda message: None)

    def text(self, x: float) -> str:
        return str(int(round(x))) if self.integer else f"{x:.6g}"

    def folder(self, x: float) -> str:
        return f"{self.out}/probes/{self.setting}={self.text(x)}"

    def spec(self, x: float, seeds: int):
        spec = load_spec(self.spec_path, overrides=[*self.overrides, f"{self.setting}={self.text(x)}",
                                                    f"sweep.seed={list(range(seeds))}"],
                         preset=self.preset, out=self.folder(x))
        if len(spec.runs) != seeds:
            raise ConfigError(f"threshold: the spec at {self.setting}={self.text(x)} has {len(spec.runs)} runs for "
                              f"{seeds} seeds; fix its other sweep axes with --set so it describes one arm")
        return spec

    def check(self, lo: float, hi: float, seeds: int) -> None:
        """Validate the spec at both ends of the range before anything runs (exit 2 on bad input)."""
        for x in (lo, hi):
            self.spec(x, seeds)

    def __call__(self, x: float, seeds: int) -> np.ndarray:
        spec = self.spec(x, seeds)
        summary = Runner(spec, self.folder(x), command=f"madlab threshold (probe {self.setting}={self.text(x)})",
                         use_ray=self.use_ray, address=self.address, stream=io.StringIO()).run()
        if summary.failed:
            first = summary.failed[0]
            raise MadlabError(f"probe {self.setting}={self.text(x)}: {len(summary.failed)} run(s) failed "
                              f"({first.run_id}: {first.error})")
        values, _ = load(self.folder(x))
        rows = values[values["metric"] == self.criterion.metric]
        if rows.empty:
            raise MadlabError(f"--metric {self.criterion.metric}: the probe's runs do not record it "
                              f"(they record: {', '.join(sorted(values['metric'].astype(str).unique()))})")
        curves = arm_curves(rows).take(list(range(seeds)))
        stats = self.criterion.statistic(curves.values)
        self.log(f"probe {self.setting}={self.text(x)}: {seeds} seeds, criterion mean {stats.mean():.4g}")
        return stats
