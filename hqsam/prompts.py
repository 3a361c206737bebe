"""Prompts made from a ground-truth mask (a box, random positive points, a noisy mask), and the check of user boxes.

Masks are at the model's input resolution (S x S after augmentation) unless stated; foreground is mask > 0.5.
Random draws come from the per-sample `torch.Generator` (CPU) the caller passes, never from the global RNG.
"""

from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

PROMPT_KINDS = ("box", "point", "noise_mask")


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes around the foreground of each mask.

    Arguments:
      masks (torch.Tensor): B x 1 x H x W, values in [0, 1].

    Returns:
      torch.Tensor: B x 4 float, XYXY in pixel indices (x0, y0 the smallest foreground column and row, x1, y1
        the largest, as torchvision.ops.masks_to_boxes). A mask with no foreground gets the whole image,
        [0, 0, W - 1, H - 1]: the prompt then says nothing about where the (absent) object is.
    """
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"expected B x 1 x H x W masks, got shape {tuple(masks.shape)}")
    foreground = masks[:, 0] > 0.5
    height, width = foreground.shape[-2:]
    x_min, x_max = _extent(foreground.any(dim=1), width)
    y_min, y_max = _extent(foreground.any(dim=2), height)
    return torch.stack([x_min, y_min, x_max, y_max], dim=1).float()


def _extent(occupied: torch.Tensor, length: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """First and last occupied index of each row of `occupied` (B x length); 0 and length - 1 where none is."""
    index = torch.arange(length, device=occupied.device).expand_as(occupied)
    first = torch.where(occupied, index, length).amin(dim=1)
    last = torch.where(occupied, index, -1).amax(dim=1)
    empty = ~occupied.any(dim=1)
    return first.masked_fill(empty, 0), last.masked_fill(empty, length - 1)


def check_boxes(boxes: np.ndarray, image_size: Tuple[int, int]) -> np.ndarray:
    """Validate K x 4 boxes (x0, y0, x1, y1) against an image of H x W; clip the parts outside it."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim == 1 and boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be K x 4 (x0, y0, x1, y1), got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"boxes contain NaN or infinite values: {boxes[~np.isfinite(boxes).all(axis=1)].tolist()}")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        raise ValueError(
            f"boxes must be x0, y0, x1, y1 with x0 <= x1 and y0 <= y1; inverted: {boxes[inverted].tolist()} "
            "(x, y, w, h boxes convert with [x, y, x + w, y + h])"
        )
    height, width = image_size
    outside = (boxes[:, 0] > width) | (boxes[:, 1] > height) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if outside.any():
        raise ValueError(f"boxes lie entirely outside the {width} x {height} image: {boxes[outside].tolist()}")
    return np.clip(boxes, 0, [width, height, width, height])


def sample_points(mask: torch.Tensor, num_points: int, generator: torch.Generator) -> torch.Tensor:
    """Distinct foreground pixels of one mask, drawn uniformly without replacement.

    A mask with fewer than `num_points` foreground pixels gives all of them, in random order (the release
    instead drops point prompts for the whole batch); an empty mask gives a 0 x 2 tensor.

    Arguments:
      mask (torch.Tensor): 1 x H x W, values in [0, 1].

    Returns:
      torch.Tensor: N x 2 float (x, y) pixel indices, N = min(num_points, foreground pixels), on the mask's
        device. SAM's prompt encoder adds the half-pixel offset itself; label every point 1 (positive).
    """
    if mask.ndim != 3 or mask.shape[0] != 1:
        raise ValueError(f"expected a 1 x H x W mask, got shape {tuple(mask.shape)}")
    if num_points < 0:
        raise ValueError(f"num_points must be >= 0, got {num_points}")
    foreground_yx = torch.nonzero(mask[0] > 0.5)
    order = torch.randperm(foreground_yx.shape[0], generator=generator)[:num_points]
    return foreground_yx[order.to(mask.device)].flip(-1).float()


def noisy_mask(mask_lowres: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The release's "noise mask" prompt: the GT, with Gaussian noise only where it is not smooth, binarised.

    The incoherent band is where the GT differs (by >= 0.01) from its copy downsampled 8x and upsampled back
    (both bilinear, align_corners=False); there N(0, 1) noise is added before thresholding at 0.5, elsewhere
    the result is the thresholded GT.

    Arguments:
      mask_lowres (torch.Tensor): 1 x h x w, the GT at the decoder's mask-input resolution (4x the image
        embedding: 256 x 256 for 1024 px models), values in [0, 1]; h and w at least 8.

    Returns:
      torch.Tensor: 1 x h x w float with values 0 and 255. SAM's prompt encoder reads mask inputs as logits;
        the release feeds these 0/255 values unchanged, and so does our training, to match it.
    """
    if mask_lowres.ndim != 3 or mask_lowres.shape[0] != 1:
        raise ValueError(f"expected a 1 x h x w mask, got shape {tuple(mask_lowres.shape)}")
    height, width = mask_lowres.shape[-2:]
    if height < 8 or width < 8:
        raise ValueError(
            f"the mask must be at least 8 x 8 (it is compared with an 8x downsampled copy), got {height} x {width}"
        )
    mask = mask_lowres.float()[None]
    smooth = F.interpolate(mask, size=(height // 8, width // 8), mode="bilinear", align_corners=False)
    smooth = F.interpolate(smooth, size=(height, width), mode="bilinear", align_corners=False)
    band = ((mask - smooth).abs() >= 0.01).float()
    noise = torch.randn(mask.shape, generator=generator).to(mask.device)
    return ((mask + noise * band) > 0.5).float()[0] * 255.0


def choose_prompt_types(generators: Sequence[torch.Generator], kinds: Sequence[str] = PROMPT_KINDS) -> List[str]:
    """One prompt kind per sample, uniform over `kinds`, drawn from that sample's generator."""
    if len(kinds) == 0:
        raise ValueError("kinds is empty: give at least one of " + ", ".join(PROMPT_KINDS))
    unknown = [kind for kind in kinds if kind not in PROMPT_KINDS]
    if unknown:
        raise ValueError(f"unknown prompt kinds {unknown}; the kinds are {PROMPT_KINDS}")
    return [kinds[int(torch.randint(len(kinds), (1,), generator=generator).item())] for generator in generators]
