"""8-bit images: the one place that knows how float images in [-1, 1] map to pixels.

Images travel through madlab as float32 ``(n, C, H, W)`` in [-1, 1]; datasets decode 8-bit
pixels as ``p / 127.5 - 1``, generated images are snapped to that grid (they become pictures
like the real ones), results folders store them as 8-bit pixels, and sample grids are drawn
from them. All of those use the two maps here, so the scaling cannot drift between them.
"""
from __future__ import annotations

import io

import numpy as np


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [-1, 1]."""
    return (np.asarray(pixels).astype(np.float32) / np.float32(127.5)) - np.float32(1.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float images in [-1, 1] -> uint8 pixels, as saving them to an 8-bit image file would."""
    return np.clip(np.rint((np.asarray(x, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def quantise(x: np.ndarray) -> np.ndarray:
    """Float images snapped to the 8-bit grid (what an 8-bit picture of them holds), float32."""
    return to_float(to_uint8(x))


def grid_png(x: np.ndarray, n: int = 64, per_row: int = 8) -> bytes:
    """A PNG of the first ``n`` images, ``per_row`` to a row (torchvision's grid layout)."""
    import torch  # torchvision loads only where a grid image is drawn
    from torchvision.utils import save_image  # torchvision loads only where a grid image is drawn

    images = torch.from_numpy(np.asarray(x[:n], dtype=np.float32))
    buffer = io.BytesIO()
    save_image((images + 1) / 2, buffer, nrow=per_row, format="png")
    return buffer.getvalue()
