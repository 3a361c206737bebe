"""Painting the toy world: an image from exact masks, with textured objects on a cluttered, textured background.

The backgrounds are textured (noise, gradients, stripes) and cluttered with distractor shapes, some of them in
colours close to an object's, so that a mask is not a colour threshold. Masks are exact: the image is painted
from the mask (no anti-aliasing), so every pixel is either object or background.
"""

import math
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .geometry import blob_points, wander
from .shapes import draw_toy_mask


def _value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth noise in about [0, 1] (float32, H x W) with blobs about `cell` px across."""
    grid = rng.random((max(2, int(height / cell) + 2), max(2, int(width / cell) + 2))).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((width, height), Image.BICUBIC))


def _stripes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Sinusoidal stripes in [0, 1] at a random angle and period (float32, H x W)."""
    y, x = np.ogrid[:height, :width]
    angle, period = rng.uniform(0, math.pi), rng.uniform(5, 30)
    wave = np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period + rng.uniform(0, 2 * math.pi))
    return (0.5 + 0.5 * wave).astype(np.float32)


def _gradient(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A linear ramp in [-1, 1] in a random direction (float32, H x W)."""
    y, x = np.ogrid[:height, :width]
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (x / width - 0.5) * math.cos(angle) + (y / height - 0.5) * math.sin(angle)
    return (ramp / 0.71).astype(np.float32)


def _pattern(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A mixing pattern in [0, 1]: smooth noise, stripes, or both."""
    kind = rng.integers(0, 3)
    if kind == 0:
        return _value_noise(rng, height, width, rng.uniform(8, 80))
    if kind == 1:
        return _stripes(rng, height, width)
    return 0.5 * _value_noise(rng, height, width, rng.uniform(8, 60)) + 0.5 * _stripes(rng, height, width)


def _random_color(rng: np.random.Generator, avoid: Sequence[np.ndarray], distance: float) -> np.ndarray:
    """A colour (float RGB) at least `distance` away from each of `avoid`, or the farthest of 64 tries."""
    candidates = rng.uniform(0, 255, (64, 3))
    if not avoid:
        return candidates[0]
    nearest = np.min(np.linalg.norm(candidates[:, None] - np.stack(avoid)[None], axis=-1), axis=1)
    far_enough = nearest >= distance
    return candidates[np.argmax(far_enough) if far_enough.any() else np.argmax(nearest)]


def _near_color(rng: np.random.Generator, color: np.ndarray) -> np.ndarray:
    """A colour close to `color` but distinguishable (30-55 away): a hard distractor."""
    direction = rng.normal(size=3)
    return np.clip(color + direction / np.linalg.norm(direction) * rng.uniform(30, 55), 0, 255)


def _texture(rng: np.random.Generator, height: int, width: int, color: np.ndarray, other: np.ndarray,
             amount: float) -> np.ndarray:
    """`color` mixed with `other` by `amount` x a pattern, shaded by a gradient, with grain (float32 H x W x 3)."""
    mix = amount * _pattern(rng, height, width)
    shade = rng.uniform(5, 30) * _gradient(rng, height, width)
    grain = rng.uniform(4, 18) * (_value_noise(rng, height, width, rng.uniform(1.5, 4)) - 0.5)
    image = color * (1 - mix[..., None]) + other * mix[..., None]
    return image + (shade + grain)[..., None]


def _clutter(rng: np.random.Generator, image: Image.Image, object_colors: Sequence[np.ndarray]) -> None:
    """Distractor shapes and lines on the background, some in colours close to an object's."""
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(rng.integers(2, 14)):
        if rng.random() < 0.3:
            color = _near_color(rng, object_colors[rng.integers(0, len(object_colors))])
        else:
            color = _random_color(rng, object_colors, 60)
        fill = tuple(int(c) for c in color)
        kind = rng.integers(0, 4)  # a blob, a ring, or (half the time) a wire
        center = (rng.uniform(0, width), rng.uniform(0, height))
        size = rng.uniform(0.03, 0.2) * min(width, height)
        if kind == 0:
            draw.polygon(blob_points(rng, center, size, ragged=rng.uniform(0, 1.5), aspect=rng.uniform(0.6, 1.6),
                                     angle=rng.uniform(0, math.pi)), fill=fill)
        elif kind == 1:
            draw.ellipse((center[0] - size, center[1] - size / 2, center[0] + size, center[1] + size / 2),
                         outline=fill, width=int(rng.integers(1, 4)))
        else:
            points = wander(rng, center, rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 1.0) * min(width, height),
                            height, width, step=4.0, wiggle=rng.uniform(0.0, 0.2))
            draw.line(points, fill=fill, width=int(rng.integers(1, 4)), joint="curve")


def paint_masks(rng: np.random.Generator, masks: Sequence[np.ndarray]) -> np.ndarray:
    """An image (uint8 H x W x 3) with each of the disjoint `masks` painted in its own texture."""
    height, width = masks[0].shape
    colors: List[np.ndarray] = []
    for _ in masks:
        colors.append(_random_color(rng, colors, 60))
    background_color = _random_color(rng, colors, rng.uniform(70, 140))
    background = _texture(rng, height, width, background_color, _random_color(rng, colors, 60), rng.uniform(0.2, 0.8))
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    _clutter(rng, canvas, colors)
    image = np.asarray(canvas).astype(np.float32)
    for mask, color in zip(masks, colors):
        amount = rng.uniform(0.0, 0.5) if rng.random() < 0.6 else 0.0
        foreground = _texture(rng, height, width, color, _near_color(rng, color), amount)
        image[mask] = foreground[mask]
    image += rng.normal(0, rng.uniform(1, 5), image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def draw_toy_object(rng: np.random.Generator, height: int, width: int, character: str) -> Tuple[np.ndarray, np.ndarray]:
    """One toy image and its exact mask.

    Returns (image uint8 height x width x 3, mask bool height x width). `character` is one of CHARACTERS:
    "dis", "coift", "hrsod" or "thin". Both sides must be at least 64 px.
    """
    mask = draw_toy_mask(rng, height, width, character)
    return paint_masks(rng, [mask]), mask
