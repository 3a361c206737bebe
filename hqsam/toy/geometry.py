"""Drawing primitives of the toy world's shapes: outlines, lines, legs, random walks, holes, on PIL canvases.

A canvas is a grayscale ("L") image the shapes are drawn on in 255; `as_mask` turns it into a bool mask.
Every random choice comes from the `np.random.Generator` passed in, so a shape is fixed by its generator's state.
"""

import math
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

Point = Tuple[float, float]
# The thinnest stroke, px: a toy image is about the toy model's 128 px input, whose low-res mask cell is 2 px, so a
# 3 px wire spans 1-2 mask cells (representable by a fine mask, smeared by SAM's coarse one), as a wire several
# pixels wide does at the paper's 1024 px input and 256 x 256 masks.
MIN_STROKE = 3


def polar(center: Point, radius: float, angle: float) -> Point:
    """The point `radius` px from `center` in direction `angle` (radians; y grows downwards)."""
    return center[0] + radius * math.cos(angle), center[1] + radius * math.sin(angle)


def _rough_noise(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """Periodic noise of length n with a 1/k^beta amplitude spectrum, zero mean and unit std (float64)."""
    k = np.arange(1, n // 2 + 1)
    spectrum = np.zeros(n // 2 + 1, dtype=complex)
    spectrum[1:] = k**-beta * np.exp(2j * np.pi * rng.random(k.size))
    noise = np.fft.irfft(spectrum, n)
    return noise / noise.std()


def blob_points(
    rng: np.random.Generator,
    center: Point,
    radius: float,
    ragged: float = 0.0,
    aspect: float = 1.0,
    angle: float = 0.0,
    spikes: int = 0,
) -> List[Point]:
    """Outline of a lumpy closed shape: a few low harmonics for the shape, 1/f noise of `ragged` px for the edge.

    A vertex every ~2 px, so the ragged edge has detail at and below a low-resolution mask cell (about 2 px of a
    toy image, see `hqsam.toy.shapes`). `spikes` adds that many hair-like points 3-12 px long.
    """
    n = max(32, int(2 * math.pi * radius * max(aspect, 1 / aspect) / 2))
    theta = np.linspace(0, 2 * math.pi, n, endpoint=False)
    harmonics = np.arange(2, 8)
    shape = 1 + np.sum(
        rng.normal(0, 0.1, (harmonics.size, 1)) / harmonics[:, None] ** 0.5
        * np.cos(harmonics[:, None] * theta + rng.uniform(0, 2 * math.pi, (harmonics.size, 1))),
        axis=0,
    )
    r = radius * np.clip(shape, 0.5, 1.6)
    if ragged > 0:
        r = r + ragged * _rough_noise(rng, n, rng.uniform(0.3, 0.9))
    if spikes > 0:
        r[rng.integers(0, n, spikes)] += rng.uniform(3, 12, spikes)
    x, y = r * np.cos(theta) * aspect, r * np.sin(theta) / aspect
    cos, sin = math.cos(angle), math.sin(angle)
    return list(zip(center[0] + x * cos - y * sin, center[1] + x * sin + y * cos))


def disk(draw: ImageDraw.ImageDraw, center: Point, radius: float, fill: int = 255) -> None:
    """A filled circle (`fill` 0 erases)."""
    x, y = center
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)


def line(draw: ImageDraw.ImageDraw, points: Sequence[Point], width: float) -> None:
    """A polyline `width` px wide (rounded to whole pixels, at least MIN_STROKE) with rounded joints and ends."""
    width = max(MIN_STROKE, int(round(width)))
    draw.line(list(points), fill=255, width=width, joint="curve")
    if width > 2:
        for end in (points[0], points[-1]):
            disk(draw, end, (width - 1) / 2)


def jointed(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, start: Point, heading: float, lengths: Sequence[float],
    widths: Sequence[float], bend: float,
) -> None:
    """A leg: segments of the given lengths and widths, each turning by about `bend` radians the same way."""
    point, side = start, rng.choice((-1.0, 1.0))
    for length, width in zip(lengths, widths):
        end = polar(point, length, heading)
        line(draw, (point, end), width)
        disk(draw, end, (max(MIN_STROKE, width) - 1) / 2)
        point, heading = end, heading + side * bend * rng.uniform(0.5, 1.5)


def wander(
    rng: np.random.Generator, start: Point, heading: float, length: float, height: int, width: int,
    step: float = 3.0, wiggle: float = 0.15, curl: float = 0.0,
) -> List[Point]:
    """A random-walk curve (a wire or cable) that turns back towards the middle when it nears the image edge."""
    points, (x, y), turn = [start], start, curl
    margin = 0.06 * min(height, width)
    for _ in range(max(2, int(length / step))):
        if not (margin < x < width - margin and margin < y < height - margin):
            heading = math.atan2(height / 2 - y, width / 2 - x) + rng.normal(0, 0.5)
        turn = 0.9 * turn + 0.1 * curl + rng.normal(0, wiggle)
        heading += turn * 0.3
        x, y = polar((x, y), step, heading)
        points.append((x, y))
    return points


def erode(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """Binary erosion with a 3x3 square, `steps` times; outside the array counts as background."""
    for _ in range(steps):
        padded = np.pad(mask, 1)
        h, w = mask.shape
        mask = np.logical_and.reduce([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    return mask


def bars(height: int, width: int, spacing: float, bar: float, angle: float, phase: float) -> np.ndarray:
    """Parallel straight bars `bar` px wide every `spacing` px, across the whole canvas (bool H x W)."""
    y, x = np.ogrid[:height, :width]
    return np.mod(x * math.cos(angle) + y * math.sin(angle) + phase, spacing) < bar


def blank_canvas(height: int, width: int) -> Tuple[Image.Image, ImageDraw.ImageDraw]:
    """An all-0 grayscale canvas, width x height px, and a drawing context on it."""
    canvas = Image.new("L", (width, height), 0)
    return canvas, ImageDraw.Draw(canvas)


def as_mask(canvas: Image.Image) -> np.ndarray:
    """The canvas's drawn pixels (above 127) as a bool H x W mask."""
    return np.asarray(canvas) > 127


def edge_points(rng: np.random.Generator, mask: np.ndarray, count: int) -> List[Tuple[Point, float]]:
    """`count` points on the mask's edge, each with the heading pointing away from the mask's centroid."""
    ys, xs = np.nonzero(mask & ~erode(mask))
    if xs.size == 0:
        return []
    cy, cx = np.nonzero(mask)[0].mean(), np.nonzero(mask)[1].mean()
    picks = rng.integers(0, xs.size, count)
    return [((float(xs[i]), float(ys[i])), math.atan2(ys[i] - cy, xs[i] - cx)) for i in picks]


def punch_holes(draw: ImageDraw.ImageDraw, rng: np.random.Generator, mask: np.ndarray, count: int,
                radius: Tuple[float, float]) -> None:
    """Erase `count` small round or lumpy holes centred inside the (eroded) mask."""
    inner = erode(mask, int(radius[1]) + 2)
    ys, xs = np.nonzero(inner if inner.any() else mask)
    for i in rng.integers(0, xs.size, count):
        r = rng.uniform(*radius)
        if rng.random() < 0.5:
            disk(draw, (xs[i], ys[i]), r, fill=0)
        else:
            draw.polygon(blob_points(rng, (xs[i], ys[i]), r, ragged=0.4, aspect=rng.uniform(0.6, 1.6),
                                     angle=rng.uniform(0, math.pi)), fill=0)


def near_centre(rng: np.random.Generator, height: int, width: int, spread: float = 0.06) -> Point:
    """The canvas centre moved by normal noise with std `spread` x the side, along each axis."""
    return width / 2 + rng.normal(0, spread * width), height / 2 + rng.normal(0, spread * height)
