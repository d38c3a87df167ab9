"""Curation in the loop: select or correct each generation's synthetic samples before they re-enter training.

``loop.curation: {name: ..., <params>}`` names a curator from the ``madlab.curators`` entry-point
group. Shipped curators: ``best-of-k`` (Ferbach et al., NeurIPS 2024), ``verify`` (Feng et al. 2024,
Yi et al.), ``self-correct`` (Gillman et al., ICML 2024), ``detector`` (Drayson et al., EMNLP 2025), ``entropy-select`` (Shi et al., NeurIPS 2025).
The loop's side (drawing candidates, publishing them) is :mod:`madlab.engine.curation_stage`.
"""
from madlab.curation.params import make_curator_params, validate_curation
from madlab.plugins.curator import Curated, Curator, CuratorParams
from madlab.plugins.registry import curator_names, get_curator_class

__all__ = ["Curated", "Curator", "CuratorParams", "curator_names", "get_curator_class", "make_curator_params",
           "validate_curation"]
