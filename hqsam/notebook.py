"""What the notebooks share: checking their papermill parameters (the profile's files: `hqsam.profiles`)."""

import os
from typing import Optional

from .profiles import get_profile, resolve_device


def check_parameters(profile: str, device: str = "auto", **limits: Optional[int]) -> str:
    """Stop a notebook at once on a bad parameter; returns the device to use ("auto" resolved).

    `limits` are counts that must be positive integers or None (no limit), e.g. max_images=20.
    """
    get_profile(profile)
    device = resolve_device(device)
    for name, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return device


def quick_requested(quick: bool) -> bool:
    """A notebook's `quick` parameter, or HQSAM_QUICK=1 in the environment (how `make test` runs them under nbval,
    which cannot pass parameters)."""
    return bool(quick) or os.environ.get("HQSAM_QUICK") == "1"
