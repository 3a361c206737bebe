"""Keyed randomness: every random draw of the project comes from a generator seeded by a key, never from global state.

A key is a tuple of non-negative integers and strings, e.g. (seed, epoch, sample index, stream) in training,
(seed, dataset name, image index) in the robustness studies, (seed, source id, image index) in the toy world. The
same key gives the same draws in any process, order or batching. Integers enter NumPy's SeedSequence as they are;
a string enters as the integer of the first 8 bytes of its UTF-8 SHA-256 (Python's own hash is salted per process).
"""

import hashlib
import os
from typing import List, Union

import numpy as np
import torch

Key = Union[int, str]


def key_entropy(*key: Key) -> List[int]:
    """The key as SeedSequence entropy: one non-negative integer per part."""
    if not key:
        raise ValueError("a random key needs at least one part (e.g. the seed)")
    entropy = []
    for part in key:
        if isinstance(part, str):
            entropy.append(int.from_bytes(hashlib.sha256(part.encode()).digest()[:8], "little"))
        elif isinstance(part, (int, np.integer)) and not isinstance(part, bool) and part >= 0:
            entropy.append(int(part))
        else:
            raise ValueError(f"a random key holds non-negative integers and strings, got {part!r} in {key!r}")
    return entropy


def keyed_seed(*key: Key) -> int:
    """A 63-bit seed from the key (for `torch.Generator.manual_seed` and other integer seeds)."""
    return int(np.random.SeedSequence(key_entropy(*key)).generate_state(1, np.uint64)[0] >> 1)


def keyed_generator(*key: Key) -> torch.Generator:
    """A CPU torch generator seeded from the key: the same key, the same draws."""
    return torch.Generator().manual_seed(keyed_seed(*key))


def keyed_rng(*key: Key) -> np.random.Generator:
    """A NumPy generator (PCG64) seeded from the key's SeedSequence: the same key, the same draws."""
    return np.random.default_rng(np.random.SeedSequence(key_entropy(*key)))


def use_deterministic_algorithms() -> None:
    """Same machine, same seed, same numbers: torch's deterministic kernels wherever it has them (a warning names
    an op that has none), cuDNN without autotuning, and cuBLAS with the fixed workspace its determinism needs."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
