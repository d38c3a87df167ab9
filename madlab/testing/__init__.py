"""The contract kits: what every generator, curator and dataset plugin must pass, importable.

Each kit has one shape: a ``Case`` (a small configuration), plain ``check_*`` functions taking a case,
and a pytest base class a plugin's test file subclasses in a few lines (:mod:`~madlab.testing.contract`):

=========  ============================  =================  ===============================
kind       module                        case               pytest class
=========  ============================  =================  ===============================
generator  :mod:`~madlab.testing.generators`  ``Case``           ``GeneratorContract``
curator    :mod:`~madlab.testing.curators`    ``CuratorCase``    ``CuratorContract``
dataset    :mod:`~madlab.testing.datasets`    ``DatasetCase``    ``DatasetContract``
=========  ============================  =================  ===============================

Loading this package as a pytest plugin (``pytest_plugins = ["madlab.testing"]``, or
``-p madlab.testing``) adds the fixture ``madlab_entry_point``, which registers a not-yet-installed
plugin for one test (:mod:`~madlab.testing.entry_points`). Needs pytest: ``pip install "madlab[test]"``.
"""
from madlab.testing.curators import (CURATOR_CHECKS, CuratorCase, CuratorContract, build_curator, check_curate,
                                     check_curator_bad_params, check_curator_determinism, make_dataset)
from madlab.testing.datasets import (DATASET_CHECKS, DatasetCase, DatasetContract, check_dataset_bad_params,
                                     check_dataset_determinism, check_draw, check_eval_set, check_registered)
from madlab.testing.entry_points import madlab_entry_point, register_entry_point
from madlab.testing.generators import (CHECKS, Case, GeneratorContract, build, check_bad_params, check_determinism,
                                       check_fit_and_sample, check_generator, check_resolution, check_samples,
                                       check_state_round_trip, fitted, generator_class, tiny_data)

__all__ = ["CHECKS", "CURATOR_CHECKS", "Case", "CuratorCase", "CuratorContract", "DATASET_CHECKS", "DatasetCase",
           "DatasetContract", "GeneratorContract", "build", "build_curator", "check_bad_params", "check_curate",
           "check_curator_bad_params", "check_curator_determinism", "check_dataset_bad_params",
           "check_dataset_determinism", "check_determinism", "check_draw", "check_eval_set", "check_fit_and_sample",
           "check_generator", "check_registered", "check_resolution", "check_samples", "check_state_round_trip",
           "fitted", "generator_class", "madlab_entry_point", "make_dataset", "register_entry_point", "tiny_data"]
