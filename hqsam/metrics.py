"""Mask IoU and boundary IoU (Cheng et al., CVPR 2021), as the paper's evaluation computes them.

The boundary band of a mask M is M minus its erosion by a 3x3 square applied d times, after a 1-pixel zero pad
(so the image border counts as boundary), with d = round(dilation_ratio * image diagonal), at least 1. That
erosion equals one erosion by a (2d+1) x (2d+1) square with zeros outside the image, computed here exactly and
separably (columns, then rows) as ANDs of runs of doubling length: a pixel survives when its window lies inside
the image and is all True. The NumPy functions score one H x W pair; the `_torch` ones score a B x H x W batch on
any device without a loop over the batch, with the same integer counts and so the same float64 values.

Empty masks give finite values: both empty -> 1.0 (they agree), exactly one empty -> 0.0. A non-empty mask
always has a non-empty band, so the same holds for boundary IoU.
"""

import math
from typing import Optional, Tuple

import numpy as np
import torch


def boundary_dilation(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """The band width d in pixels: round(dilation_ratio * sqrt(height^2 + width^2)), at least 1.

    Rounding is Python's (halves to even), as in the authors' evaluation code.
    """
    if not (math.isfinite(dilation_ratio) and dilation_ratio >= 0):
        raise ValueError(f"dilation_ratio must be a finite number >= 0, got {dilation_ratio!r}")
    return max(1, int(round(dilation_ratio * math.sqrt(height**2 + width**2))))


def mask_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """|gt and pred| / |gt or pred| of two H x W masks (bool, or integers that are all 0 or 1)."""
    gt, pred = _check_pair(gt, pred)
    return _iou(gt, pred)


def boundary_iou(gt: np.ndarray, pred: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """IoU of the boundary bands of two H x W masks (bool, or integers that are all 0 or 1)."""
    gt, pred = _check_pair(gt, pred)
    dilation = boundary_dilation(*gt.shape, dilation_ratio)
    return _iou(_band(gt, dilation), _band(pred, dilation))


def boundary_band(mask: np.ndarray, dilation: int) -> np.ndarray:
    """The H x W bool band of `mask` (H x W, bool or 0/1).

    The band holds the mask pixels whose (2*dilation+1) x (2*dilation+1) window, centred on them, is not all
    mask; pixels outside the image count as not mask.
    """
    mask = as_bool_mask(mask)
    _check_dilation(dilation)
    return _band(mask, dilation)


def mask_iou_torch(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Per-item mask IoU of two B x H x W mask tensors (bool, or 0/1 integers): a float64 tensor of shape B."""
    gt, pred = _check_pair_torch(gt, pred)
    return _iou_torch(gt, pred)


def boundary_iou_torch(gt: torch.Tensor, pred: torch.Tensor, dilation_ratio: float = 0.02) -> torch.Tensor:
    """Per-item boundary IoU of two B x H x W mask tensors (bool, or 0/1 integers): float64, shape B."""
    gt, pred = _check_pair_torch(gt, pred)
    dilation = boundary_dilation(gt.shape[-2], gt.shape[-1], dilation_ratio)
    return _iou_torch(_band_torch(gt, dilation), _band_torch(pred, dilation))


def boundary_band_torch(masks: torch.Tensor, dilation: int) -> torch.Tensor:
    """The B x H x W bool bands of B x H x W masks (bool or 0/1), as `boundary_band` computes each one."""
    masks = _as_bool_torch(masks, "masks")
    _check_dilation(dilation)
    return _band_torch(masks, dilation)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return np.count_nonzero(a & b) / union


def _band(mask: np.ndarray, dilation: int) -> np.ndarray:
    eroded = _erode_first_axis(_erode_first_axis(mask, dilation).T, dilation).T
    return mask & ~eroded


def _erode_first_axis(mask: np.ndarray, radius: int) -> np.ndarray:
    # True where the window of 2*radius+1 pixels along axis 0, centred there, lies inside and is all True.
    # runs[x] is the AND of mask[x : x + run] for run = 1, 2, 4, ...; two runs of the largest such length
    # (at least half the window) cover the window exactly.
    width = 2 * radius + 1
    length = mask.shape[0]
    eroded = np.zeros_like(mask)
    if length >= width:
        runs, run = mask, 1
        while 2 * run <= width:
            runs = runs[:-run] & runs[run:]
            run *= 2
        eroded[radius : length - radius] = runs[: length - width + 1] & runs[width - run :]
    return eroded


def _iou_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    intersection = _count_torch(a & b)
    union = _count_torch(a | b)
    ratio = intersection.double() / union.clamp_min(1).double()
    return torch.where(union > 0, ratio, torch.ones_like(ratio))


def _count_torch(masks: torch.Tensor) -> torch.Tensor:
    # Row sums of bytes, then int64 totals: exact, and on the CPU four times as fast as summing the bools into
    # int64 directly when the rows are short enough for int16 sums.
    row_dtype = torch.int16 if masks.shape[-1] < 2**15 else torch.int64
    return masks.view(torch.uint8).sum(-1, dtype=row_dtype).sum(-1)


def _band_torch(masks: torch.Tensor, dilation: int) -> torch.Tensor:
    # The same erosion as _band, written into two reused buffers: on the CPU, first touches of freshly
    # allocated batch-sized tensors cost more than the arithmetic itself.
    buffers = (torch.empty_like(masks, dtype=torch.bool), torch.empty_like(masks, dtype=torch.bool))
    eroded = masks
    for dim in (-2, -1):
        first, second = buffers if eroded is not buffers[0] else buffers[::-1]
        eroded = _erode_along_torch(eroded, dilation, dim, first, second)
    return eroded.logical_not_().logical_and_(masks)


def _erode_along_torch(
    masks: torch.Tensor, radius: int, dim: int, first: torch.Tensor, second: torch.Tensor
) -> torch.Tensor:
    # As _erode_first_axis along `dim`, alternating between the buffers `first` and `second`; returns the one
    # holding the result. `masks` is read only by the first step, which writes `first`: it may be `second`.
    width = 2 * radius + 1
    length = masks.shape[dim]
    if length < width:
        return first.zero_()
    runs, run, target = masks, 1, first
    while 2 * run <= width:
        valid = length - 2 * run + 1
        torch.logical_and(runs.narrow(dim, 0, valid), runs.narrow(dim, run, valid), out=target.narrow(dim, 0, valid))
        runs, run = target, 2 * run
        target = second if target is first else first
    count = length - width + 1
    torch.logical_and(
        runs.narrow(dim, 0, count), runs.narrow(dim, width - run, count), out=target.narrow(dim, radius, count)
    )
    target.narrow(dim, 0, radius).zero_()
    target.narrow(dim, length - radius, radius).zero_()
    return target


def _check_dilation(dilation: int) -> None:
    if isinstance(dilation, bool) or not isinstance(dilation, (int, np.integer)) or dilation < 1:
        raise ValueError(f"dilation must be an integer >= 1 (see boundary_dilation), got {dilation!r}")


def _binarise_hint(dtype: object, low: Optional[int] = None, high: Optional[int] = None) -> str:
    values = f" with values in [{low}, {high}]" if low is not None else ""
    return (
        f"masks must be boolean (or integers that are all 0 or 1), got {dtype}{values}: binarise first, "
        "e.g. mask > 128 for 0/255 masks, logits > 0 for logits"
    )


def as_bool_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """`mask` as an H x W bool array: boolean masks as they are, integer masks of 0s and 1s converted; a clear
    ValueError for anything else (other shapes, empty masks, floats, 0/255)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be an H x W mask, got an array of shape {mask.shape}")
    if mask.size == 0:
        raise ValueError(f"{name} is empty (shape {mask.shape}): it has no pixels")
    if mask.dtype == np.bool_:
        return mask
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"{name}: " + _binarise_hint(mask.dtype))
    low, high = mask.min(), mask.max()
    if low < 0 or high > 1:
        raise ValueError(f"{name}: " + _binarise_hint(mask.dtype, low, high))
    return mask.astype(bool)


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    gt, pred = as_bool_mask(gt, "gt"), as_bool_mask(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred must have the same shape, got {gt.shape} and {pred.shape}")
    return gt, pred


def _as_bool_torch(masks: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(masks, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(masks).__name__}; score arrays with mask_iou/boundary_iou"
        )
    if masks.ndim != 3:
        hint = "; for one mask pass mask[None]" if masks.ndim == 2 else ""
        raise ValueError(f"{name} must be a B x H x W tensor, got shape {tuple(masks.shape)}{hint}")
    if masks.shape[1] == 0 or masks.shape[2] == 0:
        raise ValueError(f"{name} has empty images (shape {tuple(masks.shape)}): there is nothing to score")
    if masks.dtype == torch.bool:
        return masks
    if masks.is_floating_point() or masks.is_complex():
        raise ValueError(f"{name}: " + _binarise_hint(masks.dtype))
    if masks.numel() > 0:
        low, high = int(masks.min()), int(masks.max())
        if low < 0 or high > 1:
            raise ValueError(f"{name}: " + _binarise_hint(masks.dtype, low, high))
    return masks.bool()


def _check_pair_torch(gt: torch.Tensor, pred: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    gt, pred = _as_bool_torch(gt, "gt"), _as_bool_torch(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred must have the same shape, got {tuple(gt.shape)} and {tuple(pred.shape)}")
    if gt.device != pred.device:
        raise ValueError(f"gt and pred must be on the same device, got {gt.device} and {pred.device}")
    return gt, pred
