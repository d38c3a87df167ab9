"""Safe state files: safetensors only, so loading a checkpoint never runs code."""
from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load, load_file, save

from madlab.core.files import atomic_write_bytes


def state_bytes(state: dict) -> bytes:
    """A state dict (torch tensors or numpy arrays) as safetensors bytes."""
    tensors = {}
    for key, value in state.items():
        tensor = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
        tensors[key] = tensor.contiguous()
    return save(tensors)


def state_from_bytes(data: bytes, *, as_numpy: bool = False) -> dict:
    state = load(data)
    return {k: v.numpy() for k, v in state.items()} if as_numpy else state


def save_state(state: dict, path: str) -> None:
    atomic_write_bytes(path, state_bytes(state))


def load_state(path: str, *, as_numpy: bool = False) -> dict:
    state = load_file(path)
    if as_numpy:
        return {k: v.numpy() for k, v in state.items()}
    return state
