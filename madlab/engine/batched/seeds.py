"""``madlab.engine.loop.derive_seed`` for many runs at once, bit for bit.

derive_seed hashes [seed, purpose, generation] with numpy's SeedSequence; one call costs tens of
microseconds of Python-level object work, which a batch of 1,000 runs pays twice per generation.
This is the same hash (O'Neill's seed_seq mixing as numpy implements it in
``numpy/random/bit_generator.pyx``: a 4-word pool, ``hashmix``/``mix``, then ``generate_state``),
written on uint32 arrays so a whole batch is hashed in a few vector operations. It covers the
entropy madlab uses (three words, each < 2**32); anything else falls back to the scalar
function. tests/test_batched.py checks it against derive_seed.
"""
from __future__ import annotations

import numpy as np

from madlab.engine.loop import PURPOSES, derive_seed

_INIT_A, _MULT_A = np.uint32(0x43B0D7E5), np.uint32(0x931E8875)
_INIT_B, _MULT_B = np.uint32(0x8B51F9DD), np.uint32(0x58F38DED)
_MIX_L, _MIX_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_SHIFT = np.uint32(16)
_POOL = 4


class _Hash:
    def __init__(self):
        self.const = _INIT_A

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = value ^ self.const
        self.const = self.const * _MULT_A
        value = value * self.const
        return value ^ (value >> _SHIFT)


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result = _MIX_L * x - _MIX_R * y
    return result ^ (result >> _SHIFT)


def derive_seeds(seeds, purpose: str, generation: int = 0) -> list[int]:
    """``[derive_seed(s, purpose, generation) for s in seeds]``, vectorised."""
    seeds = np.asarray(seeds, dtype=np.int64)
    if len(seeds) == 0:
        return []
    if seeds.min() < 0 or seeds.max() >= 2**32 or not 0 <= generation < 2**32:
        return [derive_seed(int(s), purpose, generation) for s in seeds]
    with np.errstate(over="ignore"):
        words = [seeds.astype(np.uint32), np.full(len(seeds), PURPOSES[purpose], np.uint32),
                 np.full(len(seeds), generation, np.uint32)]
        hashmix = _Hash()
        pool = [hashmix(words[i]) if i < len(words) else hashmix(np.zeros(len(seeds), np.uint32))
                for i in range(_POOL)]
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    pool[dst] = _mix(pool[dst], hashmix(pool[src]))
        const, state = _INIT_B, []
        for i in range(2):  # generate_state(2, uint32)
            value = pool[i % _POOL] ^ const
            const = const * _MULT_B
            value = value * const
            state.append(value ^ (value >> _SHIFT))
    high, low = state[0].astype(np.uint64), state[1].astype(np.uint64)
    out = ((high << np.uint64(31)) ^ low) & np.uint64(2**63 - 1)
    return [int(v) for v in out]
