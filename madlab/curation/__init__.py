"""Curation in the loop: select or correct each generation's synthetic samples before they re-enter training.

``loop.curation: {name: ..., <params>}`` names a curator from the ``madlab.curators`` entry-point
group. Shipped curators: ``best-of-k`` (Ferbach et al., NeurIPS 2024), ``verify`` (Feng et al. 2024,
Yi et al.), ``self-correct`` (Gillman et al., ICML 2024), ``detector`` (Drayson et al., EMNLP 2025).
"""
from madlab.curation.protocol import Curated, Curator, CuratorParams
from madlab.curation.registry import (GROUP, curator_names, get_curator_class, make_curator_params,
                                      validate_curation)
from madlab.curation.stage import CANDIDATES, CurationOutcome, CurationStage, load_candidates, round_seed

__all__ = ["CANDIDATES", "GROUP", "Curated", "CurationOutcome", "CurationStage", "Curator", "CuratorParams",
           "curator_names", "get_curator_class", "load_candidates", "make_curator_params", "round_seed",
           "validate_curation"]
