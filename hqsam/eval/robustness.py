"""The paper's robustness studies on the HQ benchmark: noisy box prompts (Table 13) and point prompts (Figure 5).

Both follow the HQ benchmark protocol of `hq_benchmark` (image and GT resized to S x S, single-mask output, SAM's
own mask and HQ-SAM's from one encoder pass, logits upsampled to the original GT size, > 0, IoU and boundary
IoU there) and change only the prompt, which is computed on the resized S x S GT (> 0.5).

Random draws come from a CPU `torch.Generator` keyed by (seed, dataset, image index, ...) (`hqsam.seeding`), so an
image's prompts do not depend on the order, the batching or how many images are evaluated.

Box noise: DN-DETR's, as the authors' `misc.box_noise` applies it (style "dn_detr"): the box in centre/size form
(cx, cy, w, h) moves its centre by u * scale * (w/2, h/2) and changes its size by u * scale * (w, h), each u
uniform in [-1, 1]; so each corner moves by up to scale * w (x) or scale * h (y). Style "corners" is DINO's
variant: each corner coordinate moves by u * scale * w/2 (x) or h/2 (y). The boxes are then clipped to the image,
[0, W] x [0, H] (the release clamps to [0, 1024]). The same draws serve every scale of an image, so the noise grows
linearly with the scale and scale 0 is exactly the clean benchmark.

Point prompts: 1 positive point is the GT's interior point (`interior_point`, the pixel farthest from the
background); n > 1 positives are n distinct foreground pixels drawn uniformly, negatives distinct background
pixels drawn uniformly, as the paper describes Figure 5 ("3, 5, 10 positive random points; 5 negatives").
"""

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch

from .. import provenance
from ..decoding import MODELS, Encoded, decode
from ..metrics import as_bool_mask
from ..modeling import HQSam
from ..prompts import boxes_from_masks, sample_points
from ..seeding import keyed_generator
from .hq_benchmark import SavedRows, chunks_to_score, encode_chunk, score

BOX_NOISE_STYLES = ("dn_detr", "corners")
PAPER_POINT_SETTINGS = ((1, 0), (3, 0), (5, 0), (5, 5), (10, 0), (10, 5))
BOX_NOISE_COLUMNS = ["dataset", "image", "model", "noise_scale", "iou", "biou"]
POINTS_COLUMNS = ["dataset", "image", "model", "pos_points", "neg_points", "trial", "iou", "biou"]
PathLike = Union[str, Path]


def noisy_boxes(
    boxes: torch.Tensor,
    scale: float,
    generator: torch.Generator,
    image_size: Tuple[int, int],
    style: str = "dn_detr",
) -> torch.Tensor:
    """DN-DETR box noise (see the module docstring for both styles), clipped to the image, kept valid.

    Arguments:
      boxes (torch.Tensor): B x 4 float XYXY boxes in pixels (x0 <= x1, y0 <= y1).
      scale (float): the noise scale, >= 0 (the paper uses 0.2 and 0.4; 0 returns `boxes` unchanged).
      generator (torch.Generator): CPU generator; B x 4 uniform numbers are drawn from it whatever the scale.
      image_size (tuple): (H, W) of the image the boxes live in; coordinates are clipped to [0, W] and [0, H].
      style (str): "dn_detr" (centre and size noise, the authors' code) or "corners" (DINO's corner noise).

    Returns:
      torch.Tensor: B x 4 float XYXY boxes on the device of `boxes`, x0 <= x1 and y0 <= y1 (a box whose sides
        cross, possible only for scale > 1, has its coordinates swapped).
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be B x 4 (x0, y0, x1, y1), got shape {tuple(boxes.shape)}")
    if not (np.isfinite(scale) and scale >= 0):
        raise ValueError(f"the noise scale must be a finite number >= 0, got {scale!r}")
    if style not in BOX_NOISE_STYLES:
        raise ValueError(f"unknown box noise style {style!r}: choose one of {BOX_NOISE_STYLES}")
    uniform = (torch.rand(boxes.shape, generator=generator, dtype=torch.float64) * 2 - 1).to(boxes.device)
    boxes64 = boxes.double()
    x0, y0, x1, y1 = boxes64.unbind(-1)
    width, height = x1 - x0, y1 - y0
    if style == "dn_detr":
        centre_x = (x0 + x1) / 2 + uniform[:, 0] * scale * width / 2
        centre_y = (y0 + y1) / 2 + uniform[:, 1] * scale * height / 2
        width = width + uniform[:, 2] * scale * width
        height = height + uniform[:, 3] * scale * height
        half_width, half_height = width / 2, height / 2
        noisy = torch.stack(
            [centre_x - half_width, centre_y - half_height, centre_x + half_width, centre_y + half_height], -1
        )
    else:
        noisy = boxes64 + uniform * scale * torch.stack([width, height, width, height], -1) / 2
    image_height, image_width = image_size
    limits = torch.tensor([image_width, image_height] * 2, dtype=torch.float64, device=boxes.device)
    noisy = torch.minimum(noisy.clamp_min(0), limits)
    low, high = torch.minimum(noisy[:, :2], noisy[:, 2:]), torch.maximum(noisy[:, :2], noisy[:, 2:])
    return torch.cat([low, high], dim=-1).to(boxes.dtype)


def squared_distance_transform(mask: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance from every pixel to the nearest False pixel of `mask`.

    Felzenszwalb and Huttenlocher's two passes: the distance to the nearest background pixel within each column,
    then per row the lower envelope of parabolas (x - x')^2 + g(x')^2, in integer arithmetic, vectorised over
    rows. Only pixels of the array count: the image border is not background (pad the mask to make it so).

    Arguments:
      mask (np.ndarray): H x W bool (or 0/1 integers).

    Returns:
      np.ndarray: H x W int64; 0 on False pixels; -1 everywhere when `mask` has no False pixel (no distance).
    """
    mask = as_bool_mask(mask)
    height, width = mask.shape
    if mask.all():
        return np.full(mask.shape, -1, dtype=np.int64)
    column = _column_distance(mask)
    # A column without background gets a value above any true squared distance, so it never wins a minimum.
    column_squared = np.where(column < 0, height**2 + width**2, column**2)
    return _lower_envelope_rows(column_squared)


def interior_point(mask: np.ndarray) -> Tuple[int, int]:
    """The (x, y) pixel of `mask` farthest (Euclidean) from the background, the image border counting as
    background (as in SAM's and RITM's click simulation); ties go to the first pixel in row-major order.

    Arguments:
      mask (np.ndarray): H x W bool (or 0/1 integers) with at least one True pixel.
    """
    mask = as_bool_mask(mask)
    if not mask.any():
        raise ValueError("the mask has no foreground, so it has no interior point")
    squared = squared_distance_transform(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(squared)), squared.shape)
    return int(x), int(y)


def point_prompts(
    mask: np.ndarray, num_positive: int, num_negative: int, generator: torch.Generator
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Point prompts from a GT mask: the interior point alone, or random foreground points, plus random
    background points.

    num_positive == 1 gives `interior_point(mask)` (no random draw); num_positive > 1 gives that many distinct
    foreground pixels drawn uniformly. Then num_negative distinct background pixels drawn uniformly. A mask with
    fewer foreground (background) pixels than asked gives all of them, so tiny masks get fewer points.

    Arguments:
      mask (np.ndarray): H x W bool (or 0/1 integers) with at least one True pixel, at the model's input size.
      generator (torch.Generator): CPU generator for the random points.

    Returns:
      torch.Tensor: N x 2 float (x, y) pixel indices, positives first (the prompt encoder adds the half pixel).
      torch.Tensor: N float labels, 1 for positive and 0 for negative points.
    """
    for name, count in (("num_positive", num_positive), ("num_negative", num_negative)):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {count!r}")
    if num_positive < 1:
        raise ValueError(f"num_positive must be at least 1 (a point prompt needs a positive point), got {num_positive}")
    mask = as_bool_mask(mask)
    if not mask.any():
        raise ValueError("the mask has no foreground: there is nowhere to put a positive point")
    foreground = torch.from_numpy(mask)[None].float()
    if num_positive == 1:
        positives = torch.tensor([interior_point(mask)], dtype=torch.float32)
    else:
        positives = sample_points(foreground, num_positive, generator)
    negatives = sample_points(1 - foreground, num_negative, generator)
    coords = torch.cat([positives, negatives])
    labels = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
    return coords, labels


@torch.no_grad()
def evaluate_box_noise(
    model: HQSam,
    sources: Sequence,
    scales: Sequence[float] = (0.0, 0.2, 0.4),
    seed: int = 0,
    max_images: int = None,
    style: str = "dn_detr",
    hq_token_only: bool = True,
    images_per_pass: int = 4,
    progress: bool = True,
    precision: str = "fp32",
    rows_file: Optional[PathLike] = None,
) -> pd.DataFrame:
    """Per-image rows (dataset, image, model, noise_scale, iou, biou): the HQ benchmark with noisy GT boxes.

    The encoder runs once per image for all scales and both models. Image i of dataset d gets the noise of
    `keyed_generator(seed, d, i)` at every scale (see `noisy_boxes`), so scale 0 reproduces
    `evaluate_hq_datasets` with the same `images_per_pass` and `precision` (the encoder's, see
    `hqsam.decoding.encode_pixels`) exactly. The rows carry their provenance (`rows.attrs["provenance"]`); with
    `rows_file` they are saved as they come and a rerun of the same provenance resumes (`SavedRows`).
    """
    for scale in scales:
        noisy_boxes(torch.zeros(1, 4), scale, torch.Generator(), (1, 1), style)  # fail before any work
    saved = SavedRows(rows_file, box_noise_provenance(model, sources, scales, seed, max_images, style, hq_token_only,
                                                      images_per_pass, precision), BOX_NOISE_COLUMNS)
    size = model.image_encoder.img_size
    for _, source, start, chunk in chunks_to_score(sources, saved.todo(sources, max_images), images_per_pass,
                                                   progress=progress):
        encoded, masks = encode_chunk(model, chunk, precision)
        clean = boxes_from_masks(masks[:, None])
        rows: List[dict] = []
        for scale in scales:
            boxes = torch.cat([
                noisy_boxes(clean[i : i + 1], scale, keyed_generator(seed, source.name, start + i), (size, size), style)
                for i in range(len(chunk))
            ])
            sparse, dense = model.prompt_encoder(points=None, boxes=boxes.to(model.device), masks=None)
            decoded = decode(model, encoded, sparse, dense, hq_token_only=hq_token_only)
            for i, sample in enumerate(chunk):
                for name in MODELS:
                    rows.append({"dataset": source.name, "image": sample.name, "model": name, "noise_scale": scale,
                                 **score(decoded[name].logits[i], sample.mask)})
        saved.add(source.name, start + len(chunk), rows)
    return saved.result()


def box_noise_provenance(model: HQSam, sources: Sequence, scales: Sequence[float] = (0.0, 0.2, 0.4), seed: int = 0,
                         max_images: Optional[int] = None, style: str = "dn_detr", hq_token_only: bool = True,
                         images_per_pass: int = 4, precision: str = "fp32") -> dict:
    """The provenance of `evaluate_box_noise` with these arguments (`hqsam.provenance.evaluation`)."""
    return provenance.evaluation("box_noise", __name__, model, sources, precision, max_images, scales=[float(s) for s in scales],
                                 seed=seed, style=style, hq_token_only=hq_token_only, images_per_pass=images_per_pass)


@torch.no_grad()
def evaluate_points(
    model: HQSam,
    sources: Sequence,
    settings: Sequence[Tuple[int, int]] = PAPER_POINT_SETTINGS,
    trials: int = 3,
    seed: int = 0,
    max_images: int = None,
    hq_token_only: bool = True,
    images_per_pass: int = 4,
    progress: bool = True,
    precision: str = "fp32",
    rows_file: Optional[PathLike] = None,
) -> pd.DataFrame:
    """Per-image rows (dataset, image, model, pos_points, neg_points, trial, iou, biou) with point prompts.

    `settings` are (positive, negative) point counts (see `point_prompts`). A setting with random points is run
    `trials` times (trial 0, 1, ...); the 1-positive, 0-negative setting is deterministic and run once (trial 0).
    Trial t of image i of dataset d draws from `keyed_generator(seed, d, i, t)`. The encoder runs once per image
    for all settings, trials and both models, at `precision` (see `hqsam.decoding.encode_pixels`). An image whose
    resized GT is empty cannot get a positive point: it is left out with a warning that names it (and in the
    provenance the rows carry, `rows.attrs["provenance"]["left_out"]`). With `rows_file` the rows are saved as
    they come and a rerun of the same provenance resumes (`SavedRows`).
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    probe = np.ones((1, 1), dtype=bool)
    for setting in settings:
        if len(setting) != 2:
            raise ValueError(f"each setting must be (positive points, negative points), got {setting!r}")
        point_prompts(probe, *setting, torch.Generator())  # fail before any work
    saved = SavedRows(rows_file, points_provenance(model, sources, settings, trials, seed, max_images, hq_token_only,
                                                   images_per_pass, precision), POINTS_COLUMNS)
    for _, source, start, chunk in chunks_to_score(sources, saved.todo(sources, max_images), images_per_pass,
                                                   progress=progress):
        encoded, masks = encode_chunk(model, chunk, precision)
        rows: List[dict] = []
        for i, (sample, mask) in enumerate(zip(chunk, masks)):
            foreground = (mask > 0.5).numpy()
            if not foreground.any():
                saved.leave_out(source.name, sample.name)
                continue
            for num_positive, num_negative in settings:
                deterministic = num_positive == 1 and num_negative == 0
                runs = range(1 if deterministic else trials)
                generators = [keyed_generator(seed, source.name, start + i, trial) for trial in runs]
                prompts = [point_prompts(foreground, num_positive, num_negative, g) for g in generators]
                decoded = _decode_points(model, encoded, i, prompts, hq_token_only)
                for trial, logits in zip(runs, decoded):
                    for name in MODELS:
                        rows.append({"dataset": source.name, "image": sample.name, "model": name,
                                     "pos_points": num_positive, "neg_points": num_negative, "trial": trial,
                                     **score(logits[name], sample.mask)})
        saved.add(source.name, start + len(chunk), rows)
    skipped = [image for images in saved.left_out.values() for image in images]
    if skipped:
        warnings.warn(
            f"{len(skipped)} image(s) left out of the point-prompt evaluation because their GT is empty after "
            f"resizing to the model's input size (no pixel > 0.5): {', '.join(skipped[:10])}"
            + (" ..." if len(skipped) > 10 else ""),
            stacklevel=2,
        )
    return saved.result()


def points_provenance(model: HQSam, sources: Sequence, settings: Sequence[Tuple[int, int]] = PAPER_POINT_SETTINGS,
                      trials: int = 3, seed: int = 0, max_images: Optional[int] = None, hq_token_only: bool = True,
                      images_per_pass: int = 4, precision: str = "fp32") -> dict:
    """The provenance of `evaluate_points` with these arguments (`hqsam.provenance.evaluation`)."""
    return provenance.evaluation("points", __name__, model, sources, precision, max_images,
                                 settings=[list(setting) for setting in settings], trials=trials, seed=seed,
                                 hq_token_only=hq_token_only, images_per_pass=images_per_pass)


def _column_distance(mask: np.ndarray) -> np.ndarray:
    # Per column, the distance to the nearest False pixel above or below (same column), -1 where the column has none.
    height = mask.shape[0]
    rows = np.arange(height)[:, None]
    far = 2 * height + 1  # farther than any pixel of the column
    above = np.maximum.accumulate(np.where(mask, -far, rows), axis=0)
    below = np.minimum.accumulate(np.where(mask, far + height, rows)[::-1], axis=0)[::-1]
    distance = np.minimum(rows - above, below - rows)
    return np.where(distance >= far, -1, distance).astype(np.int64)


def _lower_envelope_rows(values: np.ndarray) -> np.ndarray:
    # min over j of (x - j)^2 + values[r, j] for every row r and x: Felzenszwalb-Huttenlocher, one row per lane.
    # The envelope of row r holds parabolas at apexes[r, :last[r] + 1]; parabola k rules from boundary k to k + 1,
    # boundaries kept as exact fractions numerator / denominator (denominators > 0), boundary 0 being -infinity.
    num_rows, length = values.shape
    lanes = np.arange(num_rows)
    offsets = values + np.arange(length) ** 2  # values[j] + j^2
    apexes = np.zeros((num_rows, length), dtype=np.int64)
    numerators = np.zeros((num_rows, length), dtype=np.int64)
    denominators = np.ones((num_rows, length), dtype=np.int64)
    last = np.zeros(num_rows, dtype=np.int64)  # index of the envelope's last parabola

    def crossing(q: int) -> Tuple[np.ndarray, np.ndarray]:
        top = apexes[lanes, last]
        return offsets[:, q] - offsets[lanes, top], 2 * (q - top)

    for q in range(1, length):
        numerator, denominator = crossing(q)
        while True:
            # The last parabola is hidden when parabola q crosses its predecessor before its own boundary.
            hidden = (last > 0) & (numerator * denominators[lanes, last] <= numerators[lanes, last] * denominator)
            if not hidden.any():
                break
            last -= hidden
            numerator, denominator = crossing(q)
        last += 1
        apexes[lanes, last] = q
        numerators[lanes, last] = numerator
        denominators[lanes, last] = denominator

    result = np.empty_like(values)
    current = np.zeros(num_rows, dtype=np.int64)
    for x in range(length):
        while True:
            following = np.minimum(current + 1, length - 1)
            advance = (current < last) & (numerators[lanes, following] < x * denominators[lanes, following])
            if not advance.any():
                break
            current += advance
        apex = apexes[lanes, current]
        result[:, x] = (x - apex) ** 2 + values[lanes, apex]
    return result


def _decode_points(
    model: HQSam,
    encoded: Encoded,
    image: int,
    prompts: List[Tuple[torch.Tensor, torch.Tensor]],
    hq_token_only: bool,
) -> List[Dict[str, torch.Tensor]]:
    # Logits per model for each prompt of one image; prompts with equal point counts share one decoder call.
    results: List[Dict[str, torch.Tensor]] = [{} for _ in prompts]
    by_count: Dict[int, List[int]] = {}
    for index, (coords, _) in enumerate(prompts):
        by_count.setdefault(len(coords), []).append(index)
    for members in by_count.values():
        coords = torch.stack([prompts[m][0] for m in members]).to(model.device)
        labels = torch.stack([prompts[m][1] for m in members]).to(model.device)
        sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        image_index = torch.full((len(members),), image, dtype=torch.long)
        decoded = decode(model, encoded, sparse, dense, image_index, hq_token_only=hq_token_only)
        for row, member in enumerate(members):
            results[member] = {name: decoded[name].logits[row] for name in MODELS}
    return results
