"""The paper's mask loss: BCE + Dice (1:1) at points chosen PointRend-style (Mask2Former's recipe).

The loss compares the decoder's low-resolution logits with the full-resolution GT at the same continuous
points, 112 x 112 per mask: 75% the most uncertain (smallest |logit|) of 3x as many uniform candidates, 25%
fresh uniform points. Each sample's points come from its own `torch.Generator` (CPU), so the loss of a batch
is the mean of its samples' losses however the batch is split across processes.

`dense_mask_loss` is the same BCE + Dice at every pixel of the logits' grid, one value per mask (the toy SAM's
training loss, where the multimask tokens need their own losses).
"""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


def point_sample(input: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of `input` at continuous points (align_corners=False, zero outside).

    Arguments:
      input (torch.Tensor): B x C x H x W.
      coords (torch.Tensor): B x P x 2, (x, y) in [0, 1] over the whole image: (j + 0.5) / W, (i + 0.5) / H
        is the centre of pixel (i, j).

    Returns:
      torch.Tensor: B x C x P.
    """
    grid = 2.0 * coords.to(input.dtype)[:, :, None, :] - 1.0
    return F.grid_sample(input, grid, mode="bilinear", align_corners=False)[:, :, :, 0]


@torch.no_grad()
def uncertain_point_coords(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_ratio: float,
    generators: Sequence[torch.Generator],
) -> torch.Tensor:
    """PointRend's training points: the most uncertain of many uniform candidates, plus fresh uniform ones.

    Per sample, one draw of num_sampled + (num_points - k) uniform points from its generator (on the CPU),
    num_sampled = int(num_points * oversample_ratio) and k = int(importance_ratio * num_points): the first
    num_sampled are candidates, of which the k with the largest uncertainty -|logit| are kept; the rest are
    appended as they are.

    Arguments:
      logits (torch.Tensor): B x 1 x h x w mask logits.
      generators: one CPU torch.Generator per sample.

    Returns:
      torch.Tensor: B x num_points x 2 float32 (x, y) in [0, 1], on the logits' device, without gradient.
    """
    _check_logits(logits, generators)
    if not oversample_ratio >= 1.0:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0.0 <= importance_ratio <= 1.0:
        raise ValueError(f"importance_ratio must lie in [0, 1], got {importance_ratio}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    num_sampled = int(num_points * oversample_ratio)
    num_uncertain = int(importance_ratio * num_points)
    num_random = num_points - num_uncertain
    draws = torch.stack(
        [torch.rand(num_sampled + num_random, 2, generator=generator) for generator in generators]
    ).to(logits.device)
    candidates, fresh = draws[:, :num_sampled], draws[:, num_sampled:]
    uncertainty = -point_sample(logits, candidates)[:, 0].abs()
    chosen = uncertainty.topk(num_uncertain, dim=1).indices
    uncertain = torch.gather(candidates, 1, chosen[:, :, None].expand(-1, -1, 2))
    return torch.cat([uncertain, fresh], dim=1)


def dice_per_mask(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - (2 sum(p t) + 1) / (sum p + sum t + 1) of each mask, p = sigmoid(logits).

    Arguments:
      logits, targets (torch.Tensor): B x ... (one mask per row after flattening), targets in [0, 1].

    Returns:
      torch.Tensor: B.
    """
    probabilities = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    overlap = (probabilities * targets).sum(dim=1)
    total = probabilities.sum(dim=1) + targets.sum(dim=1)
    return 1.0 - (2.0 * overlap + 1.0) / (total + 1.0)


def bce_per_mask(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over each mask's points.

    Arguments:
      logits, targets (torch.Tensor): B x ... (one mask per row after flattening), targets in [0, 1].

    Returns:
      torch.Tensor: B.
    """
    per_point = F.binary_cross_entropy_with_logits(logits.flatten(1), targets.flatten(1), reduction="none")
    return per_point.mean(dim=1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """`dice_per_mask` summed over masks, divided by num_masks (a scalar)."""
    return dice_per_mask(logits, targets).sum() / num_masks


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """`bce_per_mask` summed over masks, divided by num_masks (a scalar)."""
    return bce_per_mask(logits, targets).sum() / num_masks


def dense_mask_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE + Dice (1:1) of each mask at every pixel, no point sampling.

    Arguments:
      logits (torch.Tensor): B x M x h x w mask logits.
      targets (torch.Tensor): B x 1 x h x w (one target for all M masks) or B x M x h x w, values in [0, 1].

    Returns:
      torch.Tensor: B x M.
    """
    flat_logits, flat_targets = logits.flatten(0, 1), targets.expand_as(logits).flatten(0, 1)
    return (bce_per_mask(flat_logits, flat_targets) + dice_per_mask(flat_logits, flat_targets)).view(logits.shape[:2])


def mask_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    generators: Sequence[torch.Generator],
    num_points: int = 112 * 112,
    oversample_ratio: float = 3.0,
    importance_ratio: float = 0.75,
    num_masks: Optional[float] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The paper's loss terms on the HQ logits; the training loss is their sum (weights 1:1).

    Both terms are computed in float32 at the same points (see `uncertain_point_coords`, chosen without
    gradient): the logits and the GT are each sampled bilinearly there, so their resolutions may differ.

    Arguments:
      logits (torch.Tensor): B x 1 x h x w mask logits (256 x 256 for 1024 px models).
      targets (torch.Tensor): B x 1 x H x W GT at the input resolution, values in [0, 1] (soft allowed).
      generators: one CPU torch.Generator per sample.
      num_masks (float or None): the divisor of the summed per-mask losses; None means B.

    Returns:
      (torch.Tensor, torch.Tensor): the BCE and the Dice loss, scalars.
    """
    _check_logits(logits, generators)
    if targets.ndim != 4 or targets.shape[:2] != logits.shape[:2]:
        raise ValueError(
            f"targets must be B x 1 x H x W with the logits' B = {logits.shape[0]}, got shape {tuple(targets.shape)}"
        )
    low, high = torch.aminmax(targets.detach().float())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"targets must lie in [0, 1], these span [{low.item():g}, {high.item():g}]; divide 0-255 masks by 255"
        )
    if num_masks is None:
        num_masks = logits.shape[0]
    logits = logits.float()
    coords = uncertain_point_coords(logits, num_points, oversample_ratio, importance_ratio, generators)
    point_logits = point_sample(logits, coords)
    point_targets = point_sample(targets.float(), coords)
    return bce_loss(point_logits, point_targets, num_masks), dice_loss(point_logits, point_targets, num_masks)


def _check_logits(logits: torch.Tensor, generators: Sequence[torch.Generator]) -> None:
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(f"expected B x 1 x h x w mask logits, got shape {tuple(logits.shape)}")
    if len(generators) != logits.shape[0]:
        raise ValueError(
            f"need one generator per sample: {len(generators)} generators for a batch of {logits.shape[0]}"
        )
    not_cpu = [i for i, generator in enumerate(generators) if generator.device.type != "cpu"]
    if not_cpu:
        raise ValueError(f"generators must be CPU torch.Generators (draws are made on the CPU); not: {not_cpu}")
