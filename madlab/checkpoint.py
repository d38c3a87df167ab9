"""Safe state files: safetensors only, so loading a checkpoint never runs code."""
from __future__ import annotations

import os

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def save_state(state: dict, path: str) -> None:
    tensors = {}
    for key, value in state.items():
        tensor = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        tensors[key] = tensor.contiguous()
    tmp = f"{path}.tmp-{os.getpid()}"
    save_file(tensors, tmp)
    os.replace(tmp, path)


def load_state(path: str, *, as_numpy: bool = False) -> dict:
    state = load_file(path)
    if as_numpy:
        return {k: v.numpy() for k, v in state.items()}
    return state
