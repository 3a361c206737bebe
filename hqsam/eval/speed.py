"""Speed, memory and parameter sizes of SAM and HQ-SAM, the paper's Table 10 columns (and Table 1's FPS).

One image through the evaluation code path (`hqsam.decoding`, batch 1, fp32): preprocessing, the image encoder,
the prompt encoder with one box, and SAM's decoder or HQ-SAM's (HQ features and the HQ token); the low-res logits
are the output. SAM and HQ-SAM are timed alternately (SAM first on even repeats, HQ-SAM first on odd ones), so a
drift of the machine's speed hits both alike; FPS is 1 / the median time. Timings do not depend on the weights:
without a checkpoint the model keeps its random initialisation.

Memory. On CUDA, the peak of `torch.cuda.max_memory_allocated` during one pass of each model (weights included),
in GiB: tensors only, so below what nvidia-smi shows (no CUDA context, no allocator cache). On the CPU there is
no torch-aware peak (the process's peak RSS mixes in everything the process ever held), so no activation peak is
reported (None), only the weights' size in `params_total_mb`.

Parameter sizes are MiB of fp32 weights (4 bytes each, 2^20 bytes per MB), as the paper's "MB": SAM's total is
SAM's own weights, all of them learnable in SAM's training; HQ-SAM's total adds the HQ parts, its learnable
weights are the HQ parts alone (`is_hq_parameter`).
"""

import functools
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

from ..build import build_hqsam
from ..checkpoint import is_hq_parameter
from ..decoding import MODELS, decode, encode
from ..modeling import HQSam

BYTES_PER_MB = 2**20


def parameter_sizes(model: HQSam) -> Dict[str, Dict[str, float]]:
    """{"SAM": {...}, "HQ-SAM": {...}} with params_total_mb, params_learnable_mb and params_learnable (count)."""
    sam = sum(p.numel() for name, p in model.named_parameters() if not is_hq_parameter(name))
    hq = sum(p.numel() for name, p in model.named_parameters() if is_hq_parameter(name))
    return {
        "SAM": {"params_total_mb": _megabytes(sam), "params_learnable_mb": _megabytes(sam), "params_learnable": sam},
        "HQ-SAM": {
            "params_total_mb": _megabytes(sam + hq), "params_learnable_mb": _megabytes(hq), "params_learnable": hq,
        },
    }


def device_description(device: torch.device) -> str:
    """What a timing ran on, for benchmark reports: the GPU's name, or the CPU with its torch thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def backbone_sizes(model_types: Sequence[str] = ("vit_b", "vit_l", "vit_h")) -> List[Dict[str, object]]:
    """Table 10's learnable-parameter column for real backbones, without weights: each model is built on the
    meta device (shapes only, no memory). One row {model, backbone, params_learnable_mb} per model and type."""
    rows = []
    for model_type in model_types:
        with torch.device("meta"):
            sizes = parameter_sizes(build_hqsam(model_type))
        rows += [{"model": name, "backbone": model_type, "params_learnable_mb": sizes[name]["params_learnable_mb"]}
                 for name in MODELS]
    return rows


def measure_speed(
    model_type: str = "toy",
    device: str = "cpu",
    repeats: int = 5,
    warmup: int = 1,
    checkpoint: Optional[Union[str, Path]] = None,
) -> Dict[str, object]:
    """Time SAM and HQ-SAM on one image with one box prompt, and size their weights.

    Arguments:
      model_type (str): "vit_b", "vit_l", "vit_h", "vit_tiny" or "toy" ("auto" with a checkpoint).
      device (str): "cpu", "cuda", "cuda:1", ...
      repeats (int): timed passes per model (>= 1); warmup (int): untimed passes per model before them (>= 0).
      checkpoint (path or None): weights to load; None keeps random weights (the speed is the same).

    Returns:
      dict: "model_type", "device", "image_size", "repeats", "warmup", "memory" (how memory was measured), and
        per model ("SAM", "HQ-SAM") a dict: fps, seconds (median per image), seconds_all (every timed pass),
        peak_memory_gb (CUDA; None on the CPU), params_total_mb, params_learnable_mb, params_learnable.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for but CUDA is not available here: use device='cpu'")
    model = build_hqsam(model_type, checkpoint).to(device)
    size = model.image_encoder.img_size
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, size, size), generator=generator).float().to(device)
    box = torch.tensor([[0.2 * size, 0.25 * size, 0.7 * size, 0.8 * size]], device=device)
    passes = {name: functools.partial(_one_pass, model, image, box, name) for name in MODELS}

    seconds = {name: [] for name in passes}
    peaks: Dict[str, Optional[float]] = {name: None for name in passes}
    for repeat in range(warmup + repeats):
        order = list(passes) if repeat % 2 == 0 else list(passes)[::-1]
        for name in order:
            elapsed, peak = _timed(passes[name], device)
            if repeat >= warmup:
                seconds[name].append(elapsed)
                if peak is not None:
                    peaks[name] = max(peak, peaks[name] or 0.0)

    sizes = parameter_sizes(model)
    result: Dict[str, object] = {
        "model_type": model_type,
        "device": str(device),
        "image_size": size,
        "repeats": repeats,
        "warmup": warmup,
        "memory": (
            "peak torch.cuda.max_memory_allocated per pass, weights included (GiB)"
            if device.type == "cuda"
            else "not measured on the CPU (no torch-aware peak); weights: params_total_mb"
        ),
    }
    for name in passes:
        median = statistics.median(seconds[name])
        result[name] = {
            "fps": 1.0 / median, "seconds": median, "seconds_all": seconds[name], "peak_memory_gb": peaks[name],
            **sizes[name],
        }
    return result


def _megabytes(count: int) -> float:
    return count * 4 / BYTES_PER_MB  # fp32


def _timed(run: Callable[[], torch.Tensor], device: torch.device):
    # Seconds of one pass (the device synchronised before and after) and its peak allocated GiB on CUDA.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return elapsed, peak


@torch.no_grad()
def _one_pass(model: HQSam, image: torch.Tensor, box: torch.Tensor, name: str) -> torch.Tensor:
    # The evaluation path of one model: encoder (HQ features for HQ-SAM only), prompt encoder, its decoder.
    encoded = encode(model, model.preprocess(image[None]), hq=name == "HQ-SAM")
    sparse, dense = model.prompt_encoder(points=None, boxes=box, masks=None)
    return decode(model, encoded, sparse, dense, models=(name,))[name].logits
