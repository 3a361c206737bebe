"""Reading, checking and writing checkpoints in the release's format (a flat SAM state dict plus HQ keys).

Loading never unpickles code (`weights_only=True`) and never leaves a layer silently random: every mismatch
is an error, except a plain SAM checkpoint, whose missing HQ parts the caller reports.
"""

from pathlib import Path
from typing import Dict, List, Union

import torch
from torch import nn

from .io import atomic_write

HQ_MODULES = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
HQ_PREFIXES = tuple(f"mask_decoder.{module}." for module in HQ_MODULES)

PathLike = Union[str, Path]


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


def is_hq_parameter(name: str) -> bool:
    """True for the parameters HQ-SAM adds (and trains); False for SAM's own."""
    return name.startswith(HQ_PREFIXES)


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Load a state dict from `.pth`/`.pt` (weights only, onto the CPU) or `.safetensors`.

    A dict holding the state dict under "model" or "state_dict" (common training outputs) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist: download an official one with `hqsam download NAME` "
            "(`hqsam download --list` shows the names) or pass the path of your own"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # every reader has its own exception types for a damaged file
        if "Unsupported global" in str(error):
            raise CheckpointError(
                f"{path} holds pickled Python objects besides tensors, which are not loaded (weights_only=True). "
                "If you trust the file, re-save its plain state dict: torch.save(state_dict, 'clean.pth')"
            ) from error
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size:,} bytes): {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}. The file is probably truncated or corrupt "
            "(an interrupted download?): delete it and download it again"
        ) from error
    for key in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return loaded


def check_state_dict(model: nn.Module, state_dict: Dict[str, torch.Tensor], model_type: str, source: str) -> List[str]:
    """Compare a state dict with the model's.

    Returns the HQ modules the state dict lacks entirely (a plain SAM checkpoint), [] if it is complete.
    Raises CheckpointError for anything else: unexpected keys, SAM weights missing, shape mismatches, or an
    HQ part present in some tensors and missing in others.
    """
    expected = model.state_dict()
    unexpected = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    missing_sam = [key for key in missing if not is_hq_parameter(key)]
    missing_hq = [key for key in missing if is_hq_parameter(key)]
    wrong_shape = [
        f"{key}: file {tuple(state_dict[key].shape)}, model {tuple(expected[key].shape)}"
        for key in sorted(set(state_dict) & set(expected))
        if state_dict[key].shape != expected[key].shape
    ]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
    if missing_sam:
        problems.append(f"{len(missing_sam)} of SAM's tensors missing (e.g. {missing_sam[:3]})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} tensors of the wrong shape ({'; '.join(wrong_shape[:3])})")
    hq_in_model = [key for key in expected if is_hq_parameter(key)]
    if missing_hq and len(missing_hq) != len(hq_in_model):
        problems.append(f"the HQ parts are incomplete ({len(missing_hq)} tensors missing, e.g. {missing_hq[:3]})")
    if problems:
        raise CheckpointError(
            f"{source} does not fit HQ-SAM {model_type}: " + "; ".join(problems) + ". "
            "Is it a checkpoint of another model? Official SAM and HQ-SAM files load as they are."
        )
    return [f"mask_decoder.{module}" for module in HQ_MODULES] if missing_hq else []


def save_state_dict(state_dict: Dict[str, torch.Tensor], path: PathLike) -> Path:
    """Write a state dict atomically (temporary file, fsync, rename), as `.safetensors` or torch's format."""
    path = Path(path)
    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    with atomic_write(path) as file:
        if path.suffix == ".safetensors":
            from safetensors.torch import save

            file.write(save(tensors))
        else:
            torch.save(tensors, file)
    return path
