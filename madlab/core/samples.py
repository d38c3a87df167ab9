"""The one currency passed between datasets, schemes and generators."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Samples:
    """A batch of samples.

    x: for the ``vector`` kind a float array (n, d): madlab's vector datasets draw float64 and its
       metrics compute in float64; a generator may return float32 (the neural ones do) or float64;
       for the ``image`` kind float32 (n, C, H, W) in [-1, 1]; for the ``tokens`` kind int64 (n, L):
       token ids then padding -1 (``madlab.core.tokenizer``).
    y: int64 class labels (n,) where the data has them, else None.
    """

    x: np.ndarray
    y: np.ndarray | None = None

    def __post_init__(self):
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"labels ({len(self.y)}) and samples ({len(self.x)}) differ in length")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index) -> "Samples":
        return Samples(self.x[index], None if self.y is None else self.y[index])

    @staticmethod
    def concat(parts: list["Samples"]) -> "Samples":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("no samples to concatenate")
        labelled = [p.y is not None for p in parts]
        y = np.concatenate([p.y for p in parts]) if all(labelled) else None
        return Samples(np.concatenate([p.x for p in parts]), y)
