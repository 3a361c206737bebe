"""Reading, checking and writing checkpoints in the release's format (a flat SAM state dict plus HQ keys).

Loading never unpickles code (`weights_only=True`) and never leaves a layer silently random: every mismatch
is an error, except a plain SAM checkpoint, whose missing HQ parts the caller reports. A checkpoint of one of the
paper's ablations (`hqsam.modeling.VARIANTS`) also holds its variant's name (`VARIANT_KEY`), and a fine-tuning
baseline's its fine-tuned copy of SAM's decoder parts; HQ-SAM's checkpoints are exactly the release's.
"""

from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from torch import nn

from .io import atomic_write
from .modeling.variants import DEFAULT_VARIANT, FINETUNED, VARIANTS, get_variant

HQ_MODULES = ("hf_token", "hf_mlp", "compress_vit_feat", "embedding_encoder", "embedding_maskfeature")
HQ_PREFIXES = tuple(f"mask_decoder.{module}." for module in HQ_MODULES)
FINETUNED_PREFIX = f"mask_decoder.{FINETUNED}."
VARIANT_KEY = "hqsam_variant"  # uint8, the variant's name in UTF-8; only in the ablations' checkpoints

PathLike = Union[str, Path]


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


def is_hq_parameter(name: str) -> bool:
    """True for the parameters HQ-SAM adds (and trains); False for SAM's own."""
    return name.startswith(HQ_PREFIXES)


def is_trained_parameter(name: str, variant: str = DEFAULT_VARIANT) -> bool:
    """True for the parameters that training `variant` changes (`Variant.trains`): for HQ-SAM, `is_hq_parameter`."""
    return name.startswith(tuple(f"mask_decoder.{module}." for module in get_variant(variant).trains))


def checkpoint_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """An HQSam's state dict as its checkpoint: the release's format, plus the variant's name (`VARIANT_KEY`) for
    any variant but HQ-SAM, so that loading it (`pop_variant`) gives the same model back."""
    state_dict = model.state_dict()
    variant = model.mask_decoder.variant
    if variant != DEFAULT_VARIANT:
        state_dict[VARIANT_KEY] = torch.tensor(list(variant.encode()), dtype=torch.uint8)
    return state_dict


def pop_variant(state_dict: Dict[str, torch.Tensor], source: str) -> Optional[str]:
    """Remove the variant's name from a loaded checkpoint and return it; None when it names none (HQ-SAM's, a
    release's or a plain SAM checkpoint)."""
    if VARIANT_KEY not in state_dict:
        return None
    name = bytes(state_dict.pop(VARIANT_KEY).tolist()).decode(errors="replace")
    if name not in VARIANTS:
        raise CheckpointError(f"{source} holds a model of the variant {name!r}, which this version of hqsam does not "
                              f"know (it knows {', '.join(VARIANTS)})")
    return name


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

    Returns the added modules the state dict lacks entirely, [] if it is complete: the HQ modules (a plain SAM
    checkpoint) and a fine-tuning baseline's copy of SAM's decoder parts, "mask_decoder.finetuned" (a checkpoint
    of SAM or HQ-SAM to start the baseline from). Raises CheckpointError for anything else: unexpected keys, SAM
    weights missing, shape mismatches, or an added part present in some tensors and missing in others.
    """
    expected = model.state_dict()
    unexpected = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    added = {"the HQ parts": HQ_PREFIXES, "the fine-tuned copy of SAM's decoder parts": (FINETUNED_PREFIX,)}
    missing_sam = [key for key in missing if not any(key.startswith(prefixes) for prefixes in added.values())]
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
    fresh = []
    for what, prefixes in added.items():
        lacking = [key for key in missing if key.startswith(prefixes)]
        if lacking and len(lacking) != sum(key.startswith(prefixes) for key in expected):
            problems.append(f"{what} are incomplete ({len(lacking)} tensors missing, e.g. {lacking[:3]})")
        elif lacking:
            fresh += [prefix[:-1] for prefix in prefixes]
    if problems:
        raise CheckpointError(
            f"{source} does not fit HQ-SAM {model_type}: " + "; ".join(problems) + ". "
            "Is it a checkpoint of another model? Official SAM and HQ-SAM files load as they are."
        )
    return fresh


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
