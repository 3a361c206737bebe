"""The paper's training augmentation: random horizontal flip, then large-scale jitter to a square input.

Every random number comes from the `torch.Generator` (CPU) the caller passes for this sample, never from the
global RNG, so a sample is augmented identically whichever process or worker handles it.
"""

from typing import Tuple

import torch
import torch.nn.functional as F


def hflip(
    image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, p: float = 0.5
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Flip image and mask left-right together with probability `p` (one draw from `generator`).

    Arguments:
      image (torch.Tensor): 3 x H x W, any dtype (uint8 or float).
      mask (torch.Tensor): K x H x W, float (K >= 1 masks of one image, e.g. the binarised and the soft GT).

    Returns:
      (torch.Tensor, torch.Tensor): the image and mask, flipped or as given, same shapes and dtypes.
    """
    _check_pair(image, mask)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"the flip probability p must lie in [0, 1], got {p}")
    if torch.rand(1, generator=generator).item() < p:
        return image.flip(-1), mask.flip(-1)
    return image, mask


def large_scale_jitter(
    image: torch.Tensor,
    mask: torch.Tensor,
    output_size: int,
    generator: torch.Generator,
    scale_range: Tuple[float, float] = (0.1, 2.0),
    pad_value: float = 128.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Large-scale jitter (Ghiasi et al.) to an `output_size` x `output_size` square, as the release trains.

    Draws s ~ U(scale_range); resizes the image, keeping its aspect ratio, so that its longer side is
    round(s * output_size); crops a random window of at most output_size per axis; pads bottom and right to
    output_size. The mask follows the same geometry and stays soft: it is resized bilinearly like the image
    (align_corners=False, no antialiasing) and is not thresholded here. Three draws from `generator`: the
    scale, then the crop offsets in y and x (each uniform over its integer range; 0 when nothing is cropped).

    Arguments:
      image (torch.Tensor): 3 x H x W with values in 0-255; uint8 is converted to float32.
      mask (torch.Tensor): K x H x W float in [0, 1] (K >= 1 masks of one image, each channel on its own).
      output_size (int): side S of the square output.
      scale_range ((float, float)): bounds of s, 0 < low <= high.
      pad_value (float): image value in the padded region (the mask is padded with 0).

    Returns:
      (torch.Tensor, torch.Tensor): image 3 x S x S float, mask K x S x S float.
    """
    _check_pair(image, mask)
    low, high = scale_range
    if not 0.0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    if output_size < 1:
        raise ValueError(f"output_size must be a positive number of pixels, got {output_size}")
    if not image.is_floating_point():
        image = image.float()
    if not mask.is_floating_point():
        raise TypeError(f"the mask must be a float tensor in [0, 1], got {mask.dtype}")

    scale_draw = low + (high - low) * torch.rand(1, generator=generator).item()
    height, width = image.shape[-2:]
    scaled_side = round(scale_draw * output_size)
    scale = min(scaled_side / height, scaled_side / width)
    # At least one pixel: a tiny scale on a very elongated image would otherwise round a side to zero.
    new_size = (max(1, round(height * scale)), max(1, round(width * scale)))
    image = F.interpolate(image[None], size=new_size, mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None], size=new_size, mode="bilinear", align_corners=False)[0]

    crop = [min(output_size, side) for side in new_size]
    top, left = [
        int(torch.randint(0, side - kept + 1, (1,), generator=generator).item()) for side, kept in zip(new_size, crop)
    ]
    image = image[:, top : top + crop[0], left : left + crop[1]]
    mask = mask[:, top : top + crop[0], left : left + crop[1]]

    padding = [0, output_size - crop[1], 0, output_size - crop[0]]  # left, right, top, bottom
    image = F.pad(image, padding, value=pad_value)
    mask = F.pad(mask, padding, value=0.0)
    return image, mask


def _check_pair(image: torch.Tensor, mask: torch.Tensor) -> None:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a 3 x H x W image, got shape {tuple(image.shape)}")
    if mask.ndim != 3 or mask.shape[0] < 1:
        raise ValueError(f"expected a K x H x W mask (K >= 1), got shape {tuple(mask.shape)}")
    if image.shape[1:] != mask.shape[1:]:
        raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} differ in height or width")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"the image is empty (shape {tuple(image.shape)})")
