"""The config models: what a run is, as data (schema only; nothing here opens a dataset).

:class:`RunConfig` is one fully resolved run; :class:`Run` pairs it with the sweep values that
produced it and :class:`Spec` is a whole validated spec. Reading YAML, presets, sweeps and the
checks that open datasets are :mod:`madlab.specs`'s.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from madlab.schema.schemes import Scheme, first_size


class FieldProblem(ValueError):
    """A cross-field check of a config model that names its own key (``loop.memory: only applies ...``).

    Raised inside a pydantic validator; :func:`format_validation_error` reports ``key: message``.
    """

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming the key of the first problem pydantic found (cross-field checks name their own)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    key = f"{prefix}{loc}" if loc else prefix.rstrip(".")
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, FieldProblem):
        return f"{prefix}{loc + '.' if loc else ''}{ctx_error.key}: {ctx_error.message}"
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required key is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    return f"{key}: {message}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SimsConfig(_Strict):
    """SIMS (Alemohammad et al. 2024, "Self-Improving Diffusion Models with Synthetic Data"): each generation's
    diffusion model gets an auxiliary copy fine-tuned on ``size`` of its own samples, and samples with the
    guided prediction (1 + omega) s_model - omega s_auxiliary (omega = 0: the plain model)."""

    omega: float = Field(ge=0.0, description="guidance away from the auxiliary (synthetic-data) model; 0 = off")
    size: int = Field(ge=2, description="samples of the generation's own model the auxiliary is fine-tuned on "
                                        "(at most loop.n_synthetic)")
    steps: int = Field(100, ge=1, description="optimizer steps fine-tuning the auxiliary model")


class LoopConfig(_Strict):
    scheme: Scheme
    generations: int = Field(ge=1)
    n_real: int = Field(ge=0)
    n_synthetic: int = Field(ge=0)
    n_initial: int | None = Field(None, ge=1, description="fresh-real: real samples at generation 1")
    bias: float = Field(1.0, ge=0.0, description="sampling bias λ, 1 = unbiased: in [0, 1] (MAD's bias), or a text "
                                                 "generator's temperature, which may exceed 1 (madlab.specs.validate)")
    warm_start: bool = False
    #: a bool or "truncated" (not a new field: a new field would change every run id)
    accumulate_synthetic: Literal[False, True, "truncated"] = Field(
        False, description="fixed-real: keep every earlier synthetic set (true), or the first "
                           "floor(g n_synthetic / G) rows of set g of G (\"truncated\", Gillman et al.'s toy)")
    memory: int = Field(1, ge=1, description="fresh-real: synthetic samples come from the last K models")
    train_size: int | None = Field(None, ge=1, description="accumulate-subsample: fixed training-set size")
    curation: dict | None = Field(None, description="{name: <curator>, <params>}: selects or corrects each "
                                                    "generation's synthetic samples (madlab.curation)")
    sims: SimsConfig | None = Field(None, description="SIMS guidance for diffusion generators (madlab.schema.config"
                                                      ".SimsConfig)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.first_size < 1:
            raise FieldProblem("n_real", "must be > 0: generation 1 trains on real data only")
        if self.generations > 1 and self.n_synthetic < 1:
            raise FieldProblem("n_synthetic", "must be > 0 when generations > 1")
        if self.accumulate_synthetic and self.scheme != "fixed-real":
            raise FieldProblem("accumulate_synthetic", "only applies to scheme fixed-real")
        if self.memory > 1 and self.scheme != "fresh-real":
            raise FieldProblem("memory", "only applies to scheme fresh-real")
        if self.n_initial is not None and self.scheme != "fresh-real":
            raise FieldProblem("n_initial", "only applies to scheme fresh-real (other schemes start from n_real)")
        if self.train_size is not None and self.scheme != "accumulate-subsample":
            raise FieldProblem("train_size", "only applies to scheme accumulate-subsample")
        if self.sims is not None and self.sims.size > max(self.n_synthetic, 1):
            raise FieldProblem("sims.size", f"{self.sims.size} is more than the loop.n_synthetic={self.n_synthetic} "
                                            f"samples a generation makes")
        if self.scheme == "fresh-real" and self.generations > 1 and self.n_real < 1:
            raise FieldProblem("n_real", "fresh-real needs n_real > 0 new real samples per generation")
        return self

    @property
    def first_size(self) -> int:
        """Training-set size at generation 1 (real data only)."""
        return first_size(self)


class MetricsConfig(_Strict):
    k: int = Field(5, ge=1, description="nearest neighbours for precision/recall/density/coverage")
    n_eval: int | None = Field(None, ge=2, description="samples scored per generation (default n_synthetic)")
    names: list[str] | None = Field(None, description="restrict to these metrics")
    extractor: str | None = Field(None, description="image feature extractor (default per dataset)")
    weights_path: str | None = Field(None, description="local weights file for the extractor")
    kid_subset_size: int | None = Field(None, ge=2, description="KID subset size (default min(1000, n_eval))")
    reference: Literal["heldout", "training-pool"] = Field(
        "heldout", description="the metrics' real reference set: held out from training wherever the dataset has "
                               "a split (test or held-out), or 'training-pool', MAD's protocol of scoring against "
                               "the data the models train on")
    device: str | None = None


class ResourcesConfig(_Strict):
    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)
    memory: int | None = Field(None, gt=0, description="bytes of RAM reserved per run")


class RunConfig(_Strict):
    """One fully resolved run: what a generation step needs, and nothing from the sweep."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0)
    dataset: dict
    generator: dict
    loop: LoopConfig
    metrics: MetricsConfig = MetricsConfig()
    resources: ResourcesConfig = ResourcesConfig()
    #: the generator's hyper-parameters as the run uses them (preset expanded, data-dependent
    #: defaults filled): set by :func:`build_spec` from ``Generator.resolve_params``, never by the user
    generator_resolved: dict | None = None

    def identity(self) -> dict:
        """What determines a run's results (resources do not)."""
        data = self.model_dump(mode="json", exclude={"resources"})
        data["metrics"].pop("device", None)
        if data["loop"].get("sims") is None:  # off: run ids from before the key stay valid
            data["loop"].pop("sims", None)
        if data["metrics"].get("reference") == "heldout":  # the default: run ids from before the key stay valid
            data["metrics"].pop("reference")
        return data

    def run_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class Run:
    config: RunConfig
    swept: dict[str, Any] = field(default_factory=dict)  # table column -> value

    @property
    def run_id(self) -> str:
        parts = [f"{k}={_slug(v)}" for k, v in self.swept.items()]
        slug = ",".join(parts)[:80]
        return f"{slug}-{self.config.run_hash()}" if slug else self.config.run_hash()


@dataclass
class Spec:
    base: dict
    sweep: dict | list
    out: str
    runs: list[Run]
    path: str | None = None
    #: the experiment trackers the sweep feeds (madlab.tracking.Target): no part of any run's config
    tracking: list = field(default_factory=list)


def eval_size(run: RunConfig) -> int:
    """Samples scored per generation: metrics.n_eval, else n_synthetic (else n_real)."""
    return run.metrics.n_eval or run.loop.n_synthetic or run.loop.first_size


def _slug(value) -> str:
    text = str(value)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)[:24]
