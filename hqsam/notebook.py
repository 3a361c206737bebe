"""What the notebooks share: checking their papermill parameters, and where each profile keeps its files."""

from dataclasses import dataclass
from pathlib import Path
import os
from typing import Optional

import torch

PROFILES = ("toy", "paper")


@dataclass(frozen=True)
class ProfilePaths:
    data_root: Path  # datasets (the toy world, or HQSeg-44K extracted)
    sam_checkpoint: Path  # the frozen SAM HQ-SAM is trained on
    train_dir: Path  # training outputs
    hq_checkpoint: Path  # the HQ-SAM evaluated: the toy run's export, or the released vit_l checkpoint
    results: Path  # machine-readable results (CSV)
    figures: Path  # PNG and PDF


QUICK_DIR = ".quick"  # the quick (CI) runs keep their files apart, so they never stand in for full ones


def profile_paths(profile: str, root: Path = Path("."), quick: bool = False) -> ProfilePaths:
    """The files of a profile under the repository root (the notebooks' parent folder); quick runs under
    ROOT/.quick."""
    check_parameters(profile=profile)
    root = Path(root) / QUICK_DIR if quick else Path(root)
    if profile == "toy":
        return ProfilePaths(root / "data/toy", root / "checkpoints/toy/sam_toy.pth", root / "runs/toy/train",
                            root / "runs/toy/train/sam_hq_toy.pth", root / "results/toy", root / "figures/toy")
    return ProfilePaths(root / "data/hqseg44k", root / "checkpoints/sam_vit_l_0b3195.pth", root / "runs/paper/train",
                        root / "checkpoints/sam_hq_vit_l.pth", root / "results/paper", root / "figures/paper")


def check_parameters(profile: str, device: str = "auto", **limits: Optional[int]) -> str:
    """Stop a notebook at once on a bad parameter; returns the device to use ("auto" resolved).

    `limits` are counts that must be positive integers or None (no limit), e.g. max_images=20.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r} (papermill: -p profile toy)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is visible: use device='cpu' or 'auto'")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    for name, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return device


def quick_requested(quick: bool) -> bool:
    """A notebook's `quick` parameter, or HQSAM_QUICK=1 in the environment (how `make test` runs them under nbval,
    which cannot pass parameters)."""
    return bool(quick) or os.environ.get("HQSAM_QUICK") == "1"
