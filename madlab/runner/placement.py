"""Where runs can go on a Ray cluster: per-node capacity, how long to wait for resources, GPU shares.

A run asks for ``resources: {num_cpus, num_gpus, memory}``; Ray places one actor on *one* node, so
what counts is what a single alive node offers, not the cluster's totals (two 1-GPU nodes cannot
host a 2-GPU run). When no alive node fits a shape — a GPU node was lost, or the autoscaler has not
added one yet — the runner waits up to ``$MADLAB_PLACEMENT_TIMEOUT_S`` seconds (default 1800: a
cloud GPU node takes minutes to boot) and then fails those runs with one line saying what was
asked and what the cluster has, instead of hanging forever. Their published generations stay;
running the command again resumes them.

A worker holding a fraction of a GPU caps its process's share of the card's memory
(``torch.cuda.set_per_process_memory_fraction``), so one run of four at ``num_gpus: 0.25`` cannot
take the whole card.
"""
from __future__ import annotations

import math
import os
import time

PLACEMENT_TIMEOUT_ENV = "MADLAB_PLACEMENT_TIMEOUT_S"
DEFAULT_PLACEMENT_TIMEOUT_S = 1800.0

Shape = tuple  # (num_cpus, num_gpus, memory or None)


def alive_nodes() -> list[dict[str, float]]:
    """Total resources of each alive node (``ray.nodes()``), e.g. ``{"CPU": 4, "GPU": 1, ...}``."""
    import ray  # Ray and torch load only where a sweep runs on Ray

    return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")]


def fits_on_node(shape: Shape, node: dict[str, float]) -> int:
    """How many actors of ``shape`` one node holds (by its totals)."""
    num_cpus, num_gpus, memory = shape
    fits = math.inf
    for key, need in (("CPU", num_cpus), ("GPU", num_gpus), ("memory", memory or 0)):
        if need:
            fits = min(fits, math.floor(node.get(key, 0) / need + 1e-9))
    return int(fits) if fits != math.inf else 1


def capacity(shape: Shape, nodes: list[dict[str, float]]) -> int:
    """How many actors of ``shape`` the alive nodes hold together (each actor on one node)."""
    return sum(fits_on_node(shape, node) for node in nodes)


def describe(shape: Shape) -> str:
    num_cpus, num_gpus, memory = shape
    return f"num_cpus={num_cpus:g}, num_gpus={num_gpus:g}" + (f", memory={memory}" if memory else "")


def describe_nodes(nodes: list[dict[str, float]]) -> str:
    if not nodes:
        return "no alive node"
    total = ", ".join(f"{k}={sum(n.get(k, 0) for n in nodes):g}" for k in ("CPU", "GPU"))
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)))
    return f"{total} on {len(nodes)} node(s), the largest CPU={largest.get('CPU', 0):g}, GPU={largest.get('GPU', 0):g}"


def placement_timeout() -> float:
    value = os.environ.get(PLACEMENT_TIMEOUT_ENV)
    return float(value) if value else DEFAULT_PLACEMENT_TIMEOUT_S


class PlacementWatch:
    """Since when each resource shape has fit no alive node; says when to stop waiting."""

    def __init__(self, timeout: float | None = None, stream=None, every: float = 1.0):
        self.timeout = placement_timeout() if timeout is None else timeout
        self.stream, self.every = stream, every
        self.since: dict[Shape, float] = {}
        self.checked = -math.inf

    def expired(self, shapes, nodes: list[dict[str, float]] | None = None) -> list[tuple[Shape, str]]:
        """(shape, one-line reason) for each shape in ``shapes`` that has fit no node for too long.

        Asks Ray for the nodes at most every ``every`` seconds (the runner calls this in its loop)."""
        now, out = time.monotonic(), []
        if nodes is None:
            if now - self.checked < self.every:
                return out
            nodes = alive_nodes()
        self.checked = now
        for shape in shapes:
            if capacity(shape, nodes) > 0:
                self.since.pop(shape, None)
                continue
            if shape not in self.since:
                self.since[shape] = now
                if self.stream is not None:
                    self.stream.write(f"[madlab] no alive node has {describe(shape)} ({describe_nodes(nodes)}); "
                                      f"waiting up to {self.timeout:g}s for one ({PLACEMENT_TIMEOUT_ENV})\n")
            elif now - self.since[shape] >= self.timeout:
                out.append((shape, f"resources: no node of the cluster has {describe(shape)} ({describe_nodes(nodes)}) "
                                   f"after waiting {self.timeout:g}s ({PLACEMENT_TIMEOUT_ENV}); run again once such "
                                   f"nodes exist: published generations are kept"))
                self.since.pop(shape)
        return out


def cap_gpu_memory(num_gpus: float) -> float | None:
    """Limit this process to ``num_gpus`` of the card's memory when it holds a fraction of a GPU.

    Returns the fraction set, or None (no CUDA, or a whole GPU or more).
    """
    import torch  # Ray and torch load only where a sweep runs on Ray

    if not (0 < num_gpus < 1) or not torch.cuda.is_available():
        return None
    torch.cuda.set_per_process_memory_fraction(float(num_gpus), 0)
    return float(num_gpus)


def worker_placement(device: str, memory_fraction: float | None) -> dict:
    """What a worker was given: node, Ray's GPU ids, the CUDA_VISIBLE_DEVICES it sees, its device."""
    import ray  # Ray and torch load only where a sweep runs on Ray

    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "device": device,
            "memory_fraction": memory_fraction, "pid": os.getpid()}


__all__ = ["PlacementWatch", "alive_nodes", "cap_gpu_memory", "capacity", "describe", "describe_nodes",
           "fits_on_node", "placement_timeout", "worker_placement"]
