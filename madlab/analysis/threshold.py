"""Threshold search: where along one loop setting does a stated criterion flip?

    search_threshold(evaluate, lo, hi, criterion...) -> Threshold (answer + probes table)
    RunProbes(spec, setting, criterion, out)          -> an evaluator whose probes are madlab runs

The criterion is a per-seed statistic whose mean is <= 0 where the criterion *passes*
(:class:`Criterion`), e.g. "the metric averaged over generations T-w+1..T stays within (1 + ε) of
generation 1's (the real-only fit) in the worse direction", or "stays on the good side of a level".
The threshold is the setting x* where the mean statistic crosses 0; the search assumes the mean
is monotone in the setting, and checks it.

Algorithm (every step a probe: the criterion at one setting value over seeds 0..n-1):

1. **Scan**: ``scan`` evenly spaced values over [lo, hi], both ends included.
2. **Decide** each probe with one-sided t bounds on the mean statistic: *pass* if the upper bound
   is < 0, *fail* if the lower bound is > 0; otherwise the probe is *uncertain* and its seeds are
   doubled (the runs of the seeds it already has are reused) up to ``max_seeds``; a bisection probe
   stops earlier where even ``max_seeds`` would very likely leave it undecided (``futility``: its mean
   lies within half the bound's half-width at ``max_seeds``).
3. **Check monotonicity**: the decided probes must split into one pass side and one fail side, and
   no two neighbouring probes may differ significantly in the wrong direction (a paired t bound on
   their per-seed differences: probes share seeds, so common random numbers make this sensitive).
   A violation ends the search with status ``non-monotone`` and says where; it is never bisected.
4. **Bisect** the bracket [nearest decided pass, nearest decided fail]: probe the midpoint of the
   larger gap between a bracket end and the uncertain probes inside it, until both gaps are <=
   ``tol`` (or the bracket is).

The answer's interval is that bracket. Each decision is made at level α' = α / (K · L), K the most
decisions the search can make, L the looks per probe (seed doublings): by Bonferroni, every
decision is right with probability >= 1 - α, and then the bracket holds x* if the mean criterion is
monotone. The coverage is therefore at least 1 - α (conservative; tests/test_analysis_threshold.py
counts it on the Gaussian closed form). The point estimate interpolates the mean statistic linearly
between the probes either side of 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import t as stats_t

from madlab.analysis.intervals import one_sided_bounds
from madlab.analysis.metric_info import worse_direction
from madlab.core.errors import ConfigError, MadlabError

PASS, FAIL, UNCERTAIN = "pass", "fail", "uncertain"


@dataclass(frozen=True)
class Criterion:
    """Per-seed statistic of one metric's curve over generations; passes where its mean is <= 0.

    ``within``: ε, pass iff the mean over the last ``window`` generations is within (1 + ε) of
    generation 1's value in the worse direction (for a lower-is-worse metric: >= (1 - ε) x it);
    ``level``: pass iff that mean is on the good side of ``level``. Exactly one of them."""

    metric: str
    window: int = 5
    within: float | None = None
    level: float | None = None
    worse: str | None = None

    def __post_init__(self):
        if (self.within is None) == (self.level is None):
            raise ConfigError("criterion: state exactly one of --within EPS (relative to generation 1) or --level L")
        if self.window < 1:
            raise ConfigError("--window: must be >= 1 generation")
        try:
            object.__setattr__(self, "worse", worse_direction(self.metric, self.worse))
        except ValueError as exc:
            raise ConfigError(f"--metric {self.metric}: {exc} (--worse higher|lower)") from None

    @property
    def sign(self) -> int:
        return 1 if self.worse == "higher" else -1

    def statistic(self, values: np.ndarray) -> np.ndarray:
        """Per-seed statistic of a seeds x generations matrix (generation 1 first)."""
        if values.shape[1] < self.window + (self.within is not None):
            raise MadlabError(f"criterion: {values.shape[1]} generations run, the window needs {self.window}"
                              + (" after generation 1" if self.within is not None else ""))
        tail = values[:, -self.window:].mean(axis=1)
        bound = values[:, 0] * (1 + self.sign * self.within) if self.within is not None else self.level
        return self.sign * (tail - bound)

    def describe(self) -> str:
        span = f"{self.metric} averaged over the last {self.window} generation(s)"
        if self.within is not None:
            side = f"<= (1 + {self.within:g})" if self.sign > 0 else f">= (1 - {self.within:g})"
            return f"{span} {side} x generation 1's (the real-only fit) ({self.worse} is worse)"
        return f"{span} stays {'below' if self.sign > 0 else 'above'} {self.level:g} ({self.worse} is worse)"


@dataclass
class Threshold:
    """The search's answer; ``probes`` is the tidy table of every probe."""

    setting: str
    criterion: str
    status: str                     # found | noise-limited | no flip in range | non-monotone | unresolved
    low: float
    high: float
    estimate: float
    confidence: float
    method: str
    passes: str = ""                # "below" / "above": the side of x* where the criterion passes
    violations: list = field(default_factory=list)
    probes: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "probes"}

    def describe(self) -> str:
        if self.status in ("found", "noise-limited"):
            text = (f"{self.setting}: the criterion flips at {self.estimate:.4g}, {self.confidence:.0%} interval "
                    f"[{self.low:.4g}, {self.high:.4g}] (passes {self.passes} it)")
            return text + ("; the criterion is within noise of its bound inside this interval"
                           if self.status == "noise-limited" else "")
        return f"{self.setting}: {self.status}" + (": " + "; ".join(self.violations) if self.violations else "")


class Search:
    """The state of one search: probes so far (setting value -> per-seed statistics) and decisions."""

    def __init__(self, evaluate, lo, hi, *, integer, tol, alpha, seeds, max_seeds, scan, max_bisections,
                 futility=True):
        if not lo < hi:
            raise ConfigError(f"--range: need low < high (got {lo}, {hi})")
        if seeds < 2 or max_seeds < seeds:
            raise ConfigError("--seeds/--max-seeds: need 2 <= seeds <= max_seeds")
        self.evaluate, self.lo, self.hi, self.integer = evaluate, lo, hi, integer
        self.tol = tol if tol is not None else (1 if integer else (hi - lo) / 64)
        self.seeds, self.max_seeds, self.scan = seeds, max_seeds, max(3, scan)
        self.max_bisections = max_bisections or math.ceil(math.log2(max((hi - lo) / self.tol, 2))) + 4
        looks = int(math.floor(math.log2(max_seeds / seeds))) + 1
        self.decisions = self.scan + self.max_bisections
        self.alpha, self.level = alpha, alpha / (self.decisions * looks)
        self.futility = futility
        self.stats: dict[float, np.ndarray] = {}
        self.rows: list[dict] = []

    def value(self, x: float) -> float:
        return float(round(x)) if self.integer else float(x)

    def probe(self, x: float, phase: str) -> str:
        n = self.seeds
        while True:
            stats = np.asarray(self.evaluate(x, n), dtype=float)
            self.stats[x] = stats
            mean, low, high, _ = one_sided_bounds(stats, self.level)
            decision = PASS if high < 0 else FAIL if low > 0 else UNCERTAIN
            if decision != UNCERTAIN or 2 * n > self.max_seeds or (phase == "bisect" and self.futile(stats)):
                break
            n *= 2
        self.rows.append({"order": len(self.rows) + 1, "phase": phase, "value": x, "seeds": len(stats),
                          "criterion_mean": mean, "bound_low": low, "bound_high": high, "decision": decision})
        return decision

    def futile(self, stats: np.ndarray) -> bool:
        """Stop adding seeds where even max_seeds would very likely stay undecided: the mean is inside half
        the bound's half-width at max_seeds (estimated with this sd). Saves runs, never validity: every look
        is already paid for in the Bonferroni level."""
        if not self.futility or len(stats) < 2:
            return False
        half_at_max = stats_t.ppf(1 - self.level, self.max_seeds - 1) * stats.std(ddof=1) / math.sqrt(self.max_seeds)
        return abs(float(stats.mean())) < 0.5 * half_at_max

    def decided(self) -> dict[float, str]:
        return {r["value"]: r["decision"] for r in self.rows}

    def orientation(self) -> tuple[str, list[str]]:
        """("below"/"above"/"", violations): the side where the criterion passes."""
        decided = sorted((x, d) for x, d in self.decided().items() if d != UNCERTAIN)
        passes = [x for x, d in decided if d == PASS]
        fails = [x for x, d in decided if d == FAIL]
        if not passes or not fails:
            return "", []
        if max(passes) < min(fails):
            return "below", []
        if min(passes) > max(fails):
            return "above", []
        order = ", ".join(f"{x:g}: {d}" for x, d in decided)
        return "", [f"decisions are not one pass side and one fail side ({order})"]

    def paired_violations(self, passes: str) -> list[str]:
        """Neighbouring probes whose criterion moves significantly against the pass side's direction."""
        xs = sorted(self.stats)
        rising = passes == "below"  # the statistic must not fall as the setting rises
        out = []
        for x0, x1 in zip(xs, xs[1:]):
            n = min(len(self.stats[x0]), len(self.stats[x1]))
            mean, low, high, _ = one_sided_bounds(self.stats[x1][:n] - self.stats[x0][:n], self.level)
            if (rising and high < 0) or (not rising and low > 0):
                out.append(f"the criterion {'falls' if rising else 'rises'} from {x0:g} to {x1:g} "
                           f"(paired difference {mean:.3g}, one-sided bound {high if rising else low:.3g})")
        return out


def search_threshold(evaluate, lo: float, hi: float, *, setting: str = "x", criterion: str = "",
                     integer: bool = False, tol: float | None = None, alpha: float = 0.05, seeds: int = 8,
                     max_seeds: int = 64, scan: int = 5, max_bisections: int | None = None,
                     futility: bool = True, on_probe=None) -> Threshold:
    """Find where ``evaluate(x, n) -> per-seed statistics (seeds 0..n-1)`` changes sign in [lo, hi].

    ``on_probe(probes_frame)`` is called after every probe (the CLI writes the table then)."""
    s = Search(evaluate, lo, hi, integer=integer, tol=tol, alpha=alpha, seeds=seeds, max_seeds=max_seeds,
               scan=scan, max_bisections=max_bisections, futility=futility)
    done = (lambda: on_probe(pd.DataFrame(s.rows))) if on_probe else (lambda: None)
    for x in np.linspace(lo, hi, s.scan):
        s.probe(s.value(x), "scan")
        done()
    passes, violations = s.orientation()
    violations += s.paired_violations(passes) if passes else []
    if violations:
        return _answer(s, setting, criterion, "non-monotone", passes, violations)
    if not passes:
        status = _no_flip(s)
        return _answer(s, setting, criterion, status, "", [])
    for _ in range(s.max_bisections):
        x = _next_probe(s, passes)
        if x is None:
            break
        s.probe(x, "bisect")
        done()
        passes_now, violations = s.orientation()
        violations += s.paired_violations(passes) if not violations else []
        if violations or passes_now != passes:
            return _answer(s, setting, criterion, "non-monotone", passes, violations)
    return _answer(s, setting, criterion, None, passes, [])


def _bracket(s: Search, passes: str) -> tuple[float, float, list[float]]:
    """(low end, high end, uncertain values inside) of the current bracket."""
    d = s.decided()
    pass_x = [x for x, v in d.items() if v == PASS]
    fail_x = [x for x, v in d.items() if v == FAIL]
    low, high = (max(pass_x), min(fail_x)) if passes == "below" else (max(fail_x), min(pass_x))
    return low, high, sorted(x for x, v in d.items() if v == UNCERTAIN and low < x < high)


def _next_probe(s: Search, passes: str) -> float | None:
    low, high, unsure = _bracket(s, passes)
    if high - low <= s.tol:
        return None
    gaps = [(low, unsure[0]), (unsure[-1], high)] if unsure else [(low, high)]
    gaps = [(a, b) for a, b in gaps if b - a > s.tol]
    for a, b in sorted(gaps, key=lambda g: g[0] - g[1]):
        x = s.value((a + b) / 2)
        if a < x < b and x not in s.stats:
            return x
    return None


def _no_flip(s: Search) -> str:
    d = set(s.decided().values())
    if d == {PASS}:
        return "no flip in range: the criterion passes at every probe"
    if d == {FAIL}:
        return "no flip in range: the criterion fails at every probe"
    return "unresolved: no probe decided both ways (add seeds, or widen the range)"


def _answer(s: Search, setting: str, criterion: str, status, passes: str, violations: list) -> Threshold:
    probes = pd.DataFrame(s.rows)
    low = high = estimate = math.nan
    if status is None:
        low, high, unsure = _bracket(s, passes)
        status = "noise-limited" if unsure else "found"
        estimate = _interpolate(probes, low, high)
    method = (f"bracket between the nearest probes decided pass and fail; each decision a one-sided t bound "
              f"on the mean per-seed criterion at level {s.level:.2g} = {s.alpha:g}/({s.decisions} decisions x "
              f"{round(s.alpha / s.level / s.decisions)} seed looks) (Bonferroni), so the interval holds the "
              f"threshold with probability >= {1 - s.alpha:.0%} if the mean criterion is monotone in the setting; "
              f"estimate: linear interpolation of the mean criterion")
    return Threshold(setting, criterion, status, low, high, estimate, 1 - s.alpha, method, passes, violations, probes)


def _interpolate(probes: pd.DataFrame, low: float, high: float) -> float:
    inside = probes[(probes["value"] >= low) & (probes["value"] <= high)].sort_values("value")
    x, y = inside["value"].to_numpy(), inside["criterion_mean"].to_numpy()
    for i in range(len(x) - 1):
        if (y[i] <= 0) != (y[i + 1] <= 0) and y[i + 1] != y[i]:
            return float(x[i] + (0 - y[i]) / (y[i + 1] - y[i]) * (x[i + 1] - x[i]))
    return float((low + high) / 2)
