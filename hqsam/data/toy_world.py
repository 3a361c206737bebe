"""A procedural world of intricate objects: the CPU stand-in for HQSeg-44K and for COCO.

HQ-SAM's gain over SAM is in boundaries and thin structures, which SAM's low-resolution masks smear. For a tiny
SAM (256 px input, 64x64 low-resolution masks, so 4 px per mask cell) that gain only shows on objects with detail
finer than 4 px, so every object here has some: wires and legs 1-3 px wide, holes, lattices, ragged outlines.
The backgrounds are textured (noise, gradients, stripes) and cluttered with distractor shapes, some of them in
colours close to the object's, so that a mask is not a colour threshold. Masks are exact: the image is painted
from the mask (no anti-aliasing), so every pixel is either object or background.

Objects come in four characters, mirroring the four HQ validation sets:

* "dis": the most intricate: lattices, grilles, pylons, perforated plates, dense branching, many wires (DIS5K).
* "coift": mostly solid bodies with a few thin parts: legs, antennae, handles (COIFT).
* "hrsod": one large solid object with a finely ragged outline, in larger images (HRSOD).
* "thin": wiry objects: insects, chairs, bicycles, plants, cables (ThinObject5K).

`generate_toy_world` writes them in the shape of `TOY_LAYOUT`; `generate_toy_coco` writes a COCO-format instance
set (several objects per image, occluding each other) with detector-style boxes, and `generate_toy_scenes` more
such scenes for training the toy SAM. Both are deterministic by seed
(each image is drawn from its own `np.random.default_rng([seed, source_id, index])`, so changing a count keeps the
earlier images), are built in a temporary folder that replaces the target in one rename (an interrupted run never
looks complete), and end with a manifest that makes a second call with the same arguments do nothing.
"""

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from ..io import atomic_write
from .layout import TOY_LAYOUT

PathLike = Union[str, Path]
Point = Tuple[float, float]
MaskBuilder = Callable[[np.random.Generator, int, int], np.ndarray]

VERSION = 1
MANIFEST = "manifest.json"
CHARACTERS = ("dis", "coift", "hrsod", "thin")
TOY_DIR = Path(TOY_LAYOUT[0].image_dir).parts[0]
COCO_DIR = "toy_coco"
SCENES_DIR = "toy_scenes"
COCO_CATEGORIES = ("wire", "lattice", "blob", "insect")

# Character drawn (None: each image picks one of CHARACTERS) and the range of image side lengths, per source.
_SOURCE_STYLE: Dict[str, Tuple[Optional[str], Tuple[int, int]]] = {
    "Toy-TR": (None, (200, 320)),
    "Toy-DIS": ("dis", (200, 320)),
    "Toy-COIFT": ("coift", (200, 320)),
    "Toy-HRSOD": ("hrsod", (384, 512)),
    "Toy-Thin": ("thin", (200, 320)),
}
# Foreground area as a fraction of the canvas, per character; drawings outside the range are drawn again.
_AREA_RANGE = {"dis": (0.05, 0.55), "coift": (0.08, 0.55), "hrsod": (0.18, 0.6), "thin": (0.05, 0.45)}
_MAX_ATTEMPTS = 200
_MIN_SIDE = 64
_COCO_SOURCE_ID = len(TOY_LAYOUT)  # COCO image i is drawn from default_rng([seed, _COCO_SOURCE_ID, i])
_SCENES_SOURCE_ID = _COCO_SOURCE_ID + 1
_COCO_SIDE = (280, 420)


# ----------------------------------------------------------------------------------------------------- geometry


def _polar(center: Point, radius: float, angle: float) -> Point:
    return center[0] + radius * math.cos(angle), center[1] + radius * math.sin(angle)


def _rough_noise(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """Periodic noise of length n with a 1/k^beta amplitude spectrum, zero mean and unit std (float64)."""
    k = np.arange(1, n // 2 + 1)
    spectrum = np.zeros(n // 2 + 1, dtype=complex)
    spectrum[1:] = k**-beta * np.exp(2j * np.pi * rng.random(k.size))
    noise = np.fft.irfft(spectrum, n)
    return noise / noise.std()


def _blob_points(
    rng: np.random.Generator,
    center: Point,
    radius: float,
    ragged: float = 0.0,
    aspect: float = 1.0,
    angle: float = 0.0,
    spikes: int = 0,
) -> List[Point]:
    """Outline of a lumpy closed shape: a few low harmonics for the shape, 1/f noise of `ragged` px for the edge.

    A vertex every ~2 px, so the ragged edge has detail below the 4 px of a low-resolution mask cell. `spikes`
    adds that many hair-like points 3-12 px long.
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


def _disk(draw: ImageDraw.ImageDraw, center: Point, radius: float, fill: int = 255) -> None:
    x, y = center
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)


def _line(draw: ImageDraw.ImageDraw, points: Sequence[Point], width: float) -> None:
    """A polyline `width` px wide (rounded to whole pixels, at least 1) with rounded joints and ends."""
    width = max(1, int(round(width)))
    draw.line(list(points), fill=255, width=width, joint="curve")
    if width > 2:
        for end in (points[0], points[-1]):
            _disk(draw, end, (width - 1) / 2)


def _jointed(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, start: Point, heading: float, lengths: Sequence[float],
    widths: Sequence[float], bend: float,
) -> None:
    """A leg: segments of the given lengths and widths, each turning by about `bend` radians the same way."""
    point, side = start, rng.choice((-1.0, 1.0))
    for length, width in zip(lengths, widths):
        end = _polar(point, length, heading)
        _line(draw, (point, end), width)
        if width > 1:
            _disk(draw, end, (width - 1) / 2)
        point, heading = end, heading + side * bend * rng.uniform(0.5, 1.5)


def _wander(
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
        x, y = _polar((x, y), step, heading)
        points.append((x, y))
    return points


def _erode(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """Binary erosion with a 3x3 square, `steps` times; outside the array counts as background."""
    for _ in range(steps):
        padded = np.pad(mask, 1)
        h, w = mask.shape
        mask = np.logical_and.reduce([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    return mask


def _bars(height: int, width: int, spacing: float, bar: float, angle: float, phase: float) -> np.ndarray:
    """Parallel straight bars `bar` px wide every `spacing` px, across the whole canvas (bool H x W)."""
    y, x = np.ogrid[:height, :width]
    return np.mod(x * math.cos(angle) + y * math.sin(angle) + phase, spacing) < bar


def _canvas(height: int, width: int) -> Tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("L", (width, height), 0)
    return canvas, ImageDraw.Draw(canvas)


def _as_mask(canvas: Image.Image) -> np.ndarray:
    return np.asarray(canvas) > 127


def _edge_points(rng: np.random.Generator, mask: np.ndarray, count: int) -> List[Tuple[Point, float]]:
    """`count` points on the mask's edge, each with the heading pointing away from the mask's centroid."""
    ys, xs = np.nonzero(mask & ~_erode(mask))
    if xs.size == 0:
        return []
    cy, cx = np.nonzero(mask)[0].mean(), np.nonzero(mask)[1].mean()
    picks = rng.integers(0, xs.size, count)
    return [((float(xs[i]), float(ys[i])), math.atan2(ys[i] - cy, xs[i] - cx)) for i in picks]


def _punch_holes(draw: ImageDraw.ImageDraw, rng: np.random.Generator, mask: np.ndarray, count: int,
                 radius: Tuple[float, float]) -> None:
    """Erase `count` small round or lumpy holes centred inside the (eroded) mask."""
    inner = _erode(mask, int(radius[1]) + 2)
    ys, xs = np.nonzero(inner if inner.any() else mask)
    for i in rng.integers(0, xs.size, count):
        r = rng.uniform(*radius)
        if rng.random() < 0.5:
            _disk(draw, (xs[i], ys[i]), r, fill=0)
        else:
            draw.polygon(_blob_points(rng, (xs[i], ys[i]), r, ragged=0.4, aspect=rng.uniform(0.6, 1.6),
                                      angle=rng.uniform(0, math.pi)), fill=0)


def _centre(rng: np.random.Generator, height: int, width: int, spread: float = 0.06) -> Point:
    return width / 2 + rng.normal(0, spread * width), height / 2 + rng.normal(0, spread * height)


# ------------------------------------------------------------------------------------------------------ objects


def _solid(rng: np.random.Generator, height: int, width: int, size: Tuple[float, float], ragged: Tuple[float, float],
           spikes: int = 0) -> Tuple[Image.Image, ImageDraw.ImageDraw]:
    """A body of one to three overlapping lumpy shapes, radius `size` x the shorter side."""
    canvas, draw = _canvas(height, width)
    center, side = _centre(rng, height, width), min(height, width)
    radius = rng.uniform(*size) * side
    aspect_limit = math.sqrt(width / height)
    parts = [(center, radius)]
    for _ in range(rng.integers(0, 3)):
        parts.append((_polar(center, radius * rng.uniform(0.4, 0.8), rng.uniform(0, 2 * math.pi)),
                      radius * rng.uniform(0.4, 0.75)))
    for part_center, part_radius in parts:
        points = _blob_points(rng, part_center, part_radius, ragged=rng.uniform(*ragged),
                              aspect=aspect_limit * rng.uniform(0.75, 1.3), angle=rng.normal(0, 0.3),
                              spikes=spikes)
        draw.polygon(points, fill=255)
    return canvas, draw


def _coift(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A mostly solid body with a few legs, antennae or handles, sometimes a hole."""
    canvas, draw = _solid(rng, height, width, size=(0.18, 0.3), ragged=(0.2, 1.0))
    body = _as_mask(canvas)
    side = min(height, width)
    for start, heading in _edge_points(rng, body, int(rng.integers(1, 5))):
        start = _polar(start, -3, heading)  # root the part inside the body
        if rng.random() < 0.25:  # a handle: an arc out of the body and back, enclosing a hole
            r = rng.uniform(0.06, 0.12) * side
            center = _polar(start, r * 0.6, heading)
            angles = np.linspace(heading - math.pi * 0.8, heading + math.pi * 0.8, 24)
            _line(draw, [_polar(center, r, a) for a in angles], rng.uniform(2, 4))
        else:
            length = rng.uniform(0.2, 0.45) * side
            segments = int(rng.integers(1, 4))
            _jointed(draw, rng, start, heading + rng.normal(0, 0.4), [length / segments] * segments,
                     np.linspace(rng.uniform(2, 4), rng.uniform(1, 2), segments), bend=0.5)
    if rng.random() < 0.4:
        _punch_holes(draw, rng, body, int(rng.integers(1, 3)), (2, 0.04 * side))
    return _as_mask(canvas)


def _hrsod(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A large solid body whose outline is ragged at the scale of a few pixels, with a rare thin part or hole."""
    canvas, draw = _solid(rng, height, width, size=(0.26, 0.4), ragged=(1.5, 4.0), spikes=int(rng.integers(0, 40)))
    body = _as_mask(canvas)
    side = min(height, width)
    if rng.random() < 0.4:
        for start, heading in _edge_points(rng, body, int(rng.integers(1, 3))):
            _jointed(draw, rng, _polar(start, -3, heading), heading, [rng.uniform(0.05, 0.15) * side] * 2,
                     (rng.uniform(2, 4), rng.uniform(1, 3)), bend=0.4)
    if rng.random() < 0.3:
        _punch_holes(draw, rng, body, 1, (3, 0.05 * side))
    return _as_mask(canvas)


def _lattice(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A lattice filling `region`: bars in one to three directions, 1-3 px wide, with a frame around it."""
    height, width = region.shape
    angle, spacing = rng.uniform(0, math.pi), rng.uniform(5, 13)
    directions = int(rng.choice((1, 2, 2, 3)))
    pattern = np.zeros_like(region)
    for i in range(directions):
        pattern |= _bars(height, width, spacing * rng.uniform(0.9, 1.3), rng.uniform(1.2, 3.0),
                         angle + i * math.pi / directions, rng.uniform(0, spacing))
    frame = region & ~_erode(region, int(rng.integers(1, 4)))
    return (pattern & region) | frame


def _grille(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A lattice in a lumpy, elliptic or rectangular outline, sometimes on posts (fences, grilles, nets)."""
    canvas, draw = _canvas(height, width)
    center, side = _centre(rng, height, width), min(height, width)
    kind = rng.integers(0, 3)
    if kind == 0:
        draw.polygon(_blob_points(rng, center, rng.uniform(0.25, 0.4) * side, ragged=0.5), fill=255)
    elif kind == 1:
        rx, ry = rng.uniform(0.2, 0.42) * width, rng.uniform(0.2, 0.42) * height
        draw.ellipse((center[0] - rx, center[1] - ry, center[0] + rx, center[1] + ry), fill=255)
    else:
        hw, hh, a = rng.uniform(0.2, 0.4) * width, rng.uniform(0.15, 0.35) * height, rng.normal(0, 0.3)
        corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
        draw.polygon([(center[0] + x * math.cos(a) - y * math.sin(a), center[1] + x * math.sin(a) + y * math.cos(a))
                      for x, y in corners], fill=255)
    mask = _lattice(rng, _as_mask(canvas))
    canvas, draw = _canvas(height, width)
    if rng.random() < 0.5 and mask.any():  # posts or legs below the lattice
        ys, xs = np.nonzero(mask)
        bottom = ys.max()
        for x in np.linspace(xs.min() + 2, xs.max() - 2, int(rng.integers(2, 5))):
            _line(draw, ((x, bottom - 4), (x + rng.normal(0, 3), bottom + rng.uniform(0.1, 0.25) * side)),
                  rng.uniform(2, 4))
    return mask | _as_mask(canvas)


def _pylon(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A tapering truss tower with cross-arms (an electricity pylon, a crane mast)."""
    canvas, draw = _canvas(height, width)
    cx = width / 2 + rng.normal(0, 0.05 * width)
    top, bottom = rng.uniform(0.05, 0.2) * height, rng.uniform(0.85, 0.97) * height
    half_bottom, half_top = rng.uniform(0.12, 0.3) * width, rng.uniform(0.02, 0.08) * width
    draw.polygon([(cx - half_top, top), (cx + half_top, top), (cx + half_bottom, bottom), (cx - half_bottom, bottom)],
                 fill=255)
    mask = _lattice(rng, _as_mask(canvas))
    canvas, draw = _canvas(height, width)
    for _ in range(rng.integers(1, 4)):
        y = rng.uniform(top, top + 0.4 * (bottom - top))
        reach = rng.uniform(0.2, 0.42) * width
        _line(draw, ((cx - reach, y), (cx + reach, y)), rng.uniform(2, 4))
        for sign in (-1, 1):  # insulators and wires hanging from the arm's ends
            _line(draw, ((cx + sign * reach, y), (cx + sign * reach, y + rng.uniform(6, 20))), 1)
    return mask | _as_mask(canvas)


def _perforated(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A plate full of small holes, with a few wires attached."""
    canvas, draw = _solid(rng, height, width, size=(0.2, 0.32), ragged=(0.3, 1.5))
    body = _as_mask(canvas)
    _punch_holes(draw, rng, body, int(rng.integers(8, 30)), (1.5, 4.5))
    _wires(draw, rng, body, int(rng.integers(0, 4)), (1, 2))
    return _as_mask(canvas)


def _wires(draw: ImageDraw.ImageDraw, rng: np.random.Generator, body: np.ndarray, count: int,
           width: Tuple[float, float]) -> None:
    """`count` wandering wires leaving the body's edge."""
    height, width_px = body.shape
    for start, heading in _edge_points(rng, body, count):
        points = _wander(rng, _polar(start, -2, heading), heading, rng.uniform(0.3, 0.9) * min(body.shape),
                         height, width_px)
        _line(draw, points, rng.uniform(*width))


def _branch(draw: ImageDraw.ImageDraw, rng: np.random.Generator, start: Point, heading: float, length: float,
            width: float, depth: int, spread: float, leaf: float) -> None:
    end = _polar(start, length, heading + rng.normal(0, 0.15))
    _line(draw, (start, end), width)
    if depth == 0:
        if rng.random() < leaf:
            r = rng.uniform(2.5, 6)
            draw.polygon(_blob_points(rng, _polar(end, r * 0.8, heading), r, aspect=rng.uniform(1.3, 2.0),
                                      angle=heading), fill=255)
        return
    for _ in range(3 if rng.random() < 0.25 else 2):
        _branch(draw, rng, end, heading + rng.uniform(-spread, spread), length * rng.uniform(0.6, 0.85),
                max(1.0, width * 0.7), depth - 1, spread, leaf)


def _tree(rng: np.random.Generator, height: int, width: int, depth: Tuple[int, int] = (4, 6)) -> np.ndarray:
    """A branching plant or coral: a trunk splitting into ever thinner twigs, sometimes with leaves."""
    canvas, draw = _canvas(height, width)
    if rng.random() < 0.7:  # one trunk growing up from the bottom
        start, heading, length, trunks = (width / 2 + rng.normal(0, 0.05 * width), 0.95 * height), -math.pi / 2, \
            0.25 * height, 1
    else:  # several radiating from the middle
        start, heading, length = _centre(rng, height, width), rng.uniform(0, 2 * math.pi), 0.18 * min(height, width)
        trunks = int(rng.integers(3, 6))
    leaf = rng.uniform(0.2, 1)
    for _ in range(trunks):
        _branch(draw, rng, start, heading + rng.normal(0, 0.2), length * rng.uniform(0.7, 1.0), rng.uniform(4, 7),
                int(rng.integers(*depth, endpoint=True)), rng.uniform(0.35, 0.8), leaf)
        heading += rng.uniform(1.0, 2.0)
    return _as_mask(canvas)


def _wheel(draw: ImageDraw.ImageDraw, rng: np.random.Generator, center: Point, radius: float, spokes: int) -> None:
    """A rim, a tyre (sometimes double), spokes and a hub."""
    x, y = center
    tyre = rng.uniform(2, 4)
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=255, width=int(round(tyre)))
    if rng.random() < 0.5:
        inner = radius - tyre - rng.uniform(2, 4)
        draw.ellipse((x - inner, y - inner, x + inner, y + inner), outline=255, width=1)
    offset = rng.uniform(0, 2 * math.pi)
    for i in range(spokes):
        _line(draw, (center, _polar(center, radius - 1, offset + 2 * math.pi * i / spokes)), 1)
    _disk(draw, center, rng.uniform(2, 4))


def _bicycle(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Two spoked wheels, a tube frame, handlebar and saddle."""
    canvas, draw = _canvas(height, width)
    radius = min(0.19 * width, 0.28 * height) * rng.uniform(0.85, 1.0)
    cx, cy = _centre(rng, height, width, spread=0.03)
    rear, front = (cx - 1.3 * radius, cy + 0.5 * radius), (cx + 1.3 * radius, cy + 0.5 * radius)
    spokes = int(rng.integers(10, 28))
    for hub in (rear, front):
        _wheel(draw, rng, hub, radius, spokes)
    crank = (cx - 0.1 * radius, cy + 0.6 * radius)
    seat = (cx - 0.55 * radius, cy - 0.6 * radius)
    head = (cx + 0.85 * radius, cy - 0.55 * radius)
    tube = rng.uniform(2, 4)
    for a, b in ((rear, crank), (rear, seat), (crank, seat), (seat, head), (crank, head), (head, front)):
        _line(draw, (a, b), tube)
    bar = _polar(head, 0.35 * radius, -math.pi / 2 - rng.uniform(0, 0.6))
    _line(draw, (head, bar, _polar(bar, 0.3 * radius, rng.uniform(-0.5, 0.5) + math.pi)), tube * 0.8)
    saddle = _polar(seat, 0.2 * radius, -math.pi / 2)
    _line(draw, (seat, saddle), tube)
    draw.polygon(_blob_points(rng, saddle, 0.18 * radius, aspect=2.0), fill=255)
    chainring = rng.uniform(0.15, 0.25) * radius
    draw.ellipse((crank[0] - chainring, crank[1] - chainring, crank[0] + chainring, crank[1] + chainring),
                 outline=255, width=2)
    _line(draw, (_polar(crank, 0.35 * radius, 1.0), _polar(crank, 0.35 * radius, 1.0 + math.pi)), 2)
    mask = _as_mask(canvas)
    return mask[:, ::-1].copy() if rng.random() < 0.5 else mask


def _chair(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A chair or stool seen from the front-side: seat slab, thin legs, stretchers, a slatted back."""
    canvas, draw = _canvas(height, width)
    total = rng.uniform(0.75, 0.92) * height
    has_back = rng.random() < 0.75
    back_height, leg_length = (rng.uniform(0.3, 0.45) * total if has_back else 0.0), rng.uniform(0.35, 0.5) * total
    seat_width, depth = rng.uniform(0.35, 0.55) * width, rng.uniform(0.06, 0.12) * total
    skew = rng.uniform(-0.12, 0.12) * width
    left = width / 2 - (seat_width + skew) / 2 + rng.normal(0, 0.03 * width)
    front_y = (height - total) / 2 + back_height + depth
    fl, fr = (left, front_y), (left + seat_width, front_y)
    bl, br = (left + skew, front_y - depth), (left + skew + seat_width, front_y - depth)
    thickness = rng.uniform(3, 7)
    draw.polygon([bl, br, fr, (fr[0], fr[1] + thickness), (fl[0], fl[1] + thickness), fl], fill=255)
    leg = rng.uniform(1.5, 4)
    splay = rng.uniform(0, 0.08) * seat_width
    feet = []
    for (x, y), sign in ((fl, -1), (fr, 1), (bl, -1), (br, 1)):
        foot = (x + sign * splay, y + leg_length - (depth if (x, y) in (bl, br) else 0))
        _line(draw, ((x, y + 2), foot), leg)
        feet.append(foot)
    if rng.random() < 0.7:  # stretchers between the legs
        t = rng.uniform(0.5, 0.75)
        at = [(x + t * (f[0] - x), y + t * (f[1] - y)) for (x, y), f in zip((fl, fr, bl, br), feet)]
        for a, b in ((0, 1), (0, 2), (1, 3)):
            _line(draw, (at[a], at[b]), rng.uniform(1, 2.5))
    if has_back:
        top_left, top_right = (bl[0], bl[1] - back_height), (br[0], br[1] - back_height)
        upright = rng.uniform(2, 4)
        _line(draw, (bl, top_left), upright)
        _line(draw, (br, top_right), upright)
        _line(draw, (top_left, top_right), rng.uniform(3, 7))
        slats = int(rng.integers(1, 7))
        for f in np.linspace(0, 1, slats + 2)[1:-1]:
            x = bl[0] + f * seat_width
            _line(draw, ((x, bl[1]), (x, top_left[1])), rng.uniform(1, 3))
    mask = _as_mask(canvas)
    return mask[:, ::-1].copy() if rng.random() < 0.5 else mask


def _insect(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Head, thorax and abdomen along an axis, six jointed legs thinning to 1 px, long antennae, sometimes wings."""
    canvas, draw = _canvas(height, width)
    side = min(height, width)
    center, axis = _centre(rng, height, width, spread=0.04), rng.uniform(0, 2 * math.pi)
    body = rng.uniform(0.45, 0.6) * side
    abdomen_len, thorax_len, head_len = body * 0.5, body * 0.22, body * 0.14
    girth = rng.uniform(0.4, 0.65)
    thorax = center
    abdomen = _polar(center, -(thorax_len + abdomen_len) / 2, axis)
    head = _polar(center, (thorax_len + head_len) / 2 + 1, axis)
    if rng.random() < 0.4:  # wings: veined outlines over the abdomen
        for sign in (-1, 1):
            wing_axis = axis + math.pi + sign * rng.uniform(0.2, 0.6)
            wing_len = rng.uniform(0.5, 0.8) * body
            wing_center = _polar(thorax, wing_len / 2, wing_axis)
            points = _blob_points(rng, wing_center, wing_len / 2 / 1.8, aspect=1.8, angle=wing_axis)
            _line(draw, points + points[:1], 1)
            for _ in range(rng.integers(2, 5)):
                vein = _polar(thorax, wing_len * rng.uniform(0.6, 0.95), wing_axis + rng.normal(0, 0.12))
                _line(draw, (thorax, vein), 1)
    for part, length, fatness in ((abdomen, abdomen_len, girth), (thorax, thorax_len, 0.8), (head, head_len, 0.9)):
        r = length / 2
        draw.polygon(_blob_points(rng, part, r * math.sqrt(fatness), ragged=0.3, aspect=1 / math.sqrt(fatness),
                                  angle=axis), fill=255)
    leg_length = rng.uniform(0.35, 0.55) * side
    for sign in (-1, 1):
        for i, sweep in enumerate((0.6, 0.0, -0.7)):
            start = _polar(thorax, (1 - i) * thorax_len * 0.3, axis)
            heading = axis + sign * (math.pi / 2 - sweep) + rng.normal(0, 0.15)
            point, turn = start, sign * rng.uniform(0.3, 0.8) * (1 if i == 2 else -1)
            for length, leg_width in zip((0.3, 0.42, 0.28), (rng.uniform(2.5, 4), rng.uniform(1.5, 3), 1)):
                end = _polar(point, length * leg_length, heading)
                _line(draw, (point, end), leg_width)
                point, heading = end, heading + turn + rng.normal(0, 0.2)
    for sign in (-1, 1):
        antenna = _wander(rng, head, axis + sign * rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.4) * side, height,
                          width, step=2.0, wiggle=0.08)
        _line(draw, antenna, 1)
    return _as_mask(canvas)


def _cable(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One or two connectors with long, looping cables 2-4 px thick (headphones, chargers)."""
    canvas, draw = _canvas(height, width)
    center, side = _centre(rng, height, width, spread=0.12), min(height, width)
    angle = rng.uniform(0, 2 * math.pi)
    hw, hh = rng.uniform(0.04, 0.08) * side, rng.uniform(0.02, 0.05) * side
    corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
    draw.polygon([(center[0] + x * math.cos(angle) - y * math.sin(angle),
                   center[1] + x * math.sin(angle) + y * math.cos(angle)) for x, y in corners], fill=255)
    thickness = rng.uniform(2.5, 5)
    for _ in range(rng.integers(1, 4)):
        points = _wander(rng, center, angle + rng.normal(0, 0.3), rng.uniform(2.0, 3.5) * side, height, width,
                         wiggle=rng.uniform(0.05, 0.2), curl=rng.choice((0.0, rng.uniform(-0.4, 0.4))))
        _line(draw, points, thickness)
        if rng.random() < 0.3:  # a plug at the far end
            _disk(draw, points[-1], thickness * rng.uniform(1.5, 2.5))
    return _as_mask(canvas)


def _dis(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """The most intricate: a lattice, a pylon, a perforated plate or a dense tree, often with extra wires."""
    builder = (_grille, _pylon, _perforated, _dense_tree, _spoked)[rng.integers(0, 5)]
    mask = builder(rng, height, width)
    if rng.random() < 0.5:
        canvas, draw = _canvas(height, width)
        _wires(draw, rng, mask, int(rng.integers(1, 5)), (1, 2.5))
        mask = mask | _as_mask(canvas)
    return mask


def _dense_tree(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return _tree(rng, height, width, depth=(5, 7))


def _spoked(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A wheel or rose window: rings and many spokes, with a ragged gear rim sometimes."""
    canvas, draw = _canvas(height, width)
    center = _centre(rng, height, width, spread=0.04)
    radius = rng.uniform(0.3, 0.42) * min(height, width)
    for ring in range(int(rng.integers(1, 4))):
        _wheel(draw, rng, center, radius * (1 - 0.3 * ring), int(rng.integers(12, 40)))
    if rng.random() < 0.5:
        teeth = int(rng.integers(16, 40))
        for i in range(teeth):
            a = 2 * math.pi * i / teeth
            _line(draw, (_polar(center, radius - 2, a), _polar(center, radius + rng.uniform(3, 7), a)), 3)
    return _as_mask(canvas)


def _thin(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A wiry object: an insect, a chair, a bicycle, a plant or cables."""
    return (_insect, _chair, _bicycle, _tree, _cable)[rng.integers(0, 5)](rng, height, width)


def _latticework(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return (_grille, _pylon)[rng.integers(0, 2)](rng, height, width)


def _blob(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return (_coift, _hrsod)[rng.integers(0, 2)](rng, height, width)


_CHARACTER_BUILDERS: Dict[str, MaskBuilder] = {"dis": _dis, "coift": _coift, "hrsod": _hrsod, "thin": _thin}
# COCO categories: name -> (builder, allowed area fraction of the object's own canvas)
_CATEGORY_BUILDERS: Dict[str, Tuple[MaskBuilder, Tuple[float, float]]] = {
    "wire": (_cable, (0.04, 0.5)),
    "lattice": (_latticework, (0.05, 0.6)),
    "blob": (_blob, (0.08, 0.6)),
    "insect": (_insect, (0.04, 0.5)),
}


def _draw_mask(rng: np.random.Generator, height: int, width: int, builder: MaskBuilder,
               area_range: Tuple[float, float], what: str) -> np.ndarray:
    """Draw with `builder` until the foreground fraction falls in `area_range`."""
    for _ in range(_MAX_ATTEMPTS):
        mask = builder(rng, height, width)
        if area_range[0] <= mask.mean() <= area_range[1]:
            return mask
    raise RuntimeError(f"no {what} object of {height}x{width} px within area {area_range} in {_MAX_ATTEMPTS} draws")


def draw_toy_mask(rng: np.random.Generator, height: int, width: int, character: str) -> np.ndarray:
    """One object's exact mask (bool, height x width) of the given character (one of CHARACTERS)."""
    if character not in _CHARACTER_BUILDERS:
        raise ValueError(f"unknown character {character!r}: choose one of {', '.join(CHARACTERS)}")
    if min(height, width) < _MIN_SIDE:
        raise ValueError(f"image of {height}x{width} px is too small: both sides must be at least {_MIN_SIDE} px")
    return _draw_mask(rng, height, width, _CHARACTER_BUILDERS[character], _AREA_RANGE[character], character)


# ---------------------------------------------------------------------------------------------------- textures


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
            draw.polygon(_blob_points(rng, center, size, ragged=rng.uniform(0, 1.5), aspect=rng.uniform(0.6, 1.6),
                                      angle=rng.uniform(0, math.pi)), fill=fill)
        elif kind == 1:
            draw.ellipse((center[0] - size, center[1] - size / 2, center[0] + size, center[1] + size / 2),
                         outline=fill, width=int(rng.integers(1, 4)))
        else:
            points = _wander(rng, center, rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 1.0) * min(width, height),
                             height, width, step=4.0, wiggle=rng.uniform(0.0, 0.2))
            draw.line(points, fill=fill, width=int(rng.integers(1, 4)), joint="curve")


def _paint(rng: np.random.Generator, masks: Sequence[np.ndarray]) -> np.ndarray:
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
    return _paint(rng, [mask]), mask


# ------------------------------------------------------------------------------------------------------ writing


def _save_image(image: np.ndarray, path: Path) -> None:
    # 4:4:4 chroma so that 1 px wires keep their colour; quality high enough that JPEG does not eat them.
    Image.fromarray(image).save(path, quality=95, subsampling=0)


def _save_mask(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def _write_json(data: object, path: Path) -> None:
    with atomic_write(path, "w") as file:
        json.dump(data, file, indent=1)


def _read_manifest(target: Path) -> Optional[dict]:
    """The target's manifest, {} if it is unreadable, None if there is none (or `target` is not a folder)."""
    try:
        with open(target / MANIFEST) as file:
            manifest = json.load(file)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _count_mismatches(target: Path, files: Dict[str, int]) -> List[str]:
    """Folders of `target` whose file count differs from the manifest's."""
    wrong = []
    for folder, expected in files.items():
        found = sum(1 for entry in os.scandir(target / folder) if entry.is_file()) if (target / folder).is_dir() else 0
        if found != expected:
            wrong.append(f"{folder}: {found} files, manifest says {expected}")
    return wrong


def build_once(target: Path, params: dict, build: Callable[[Path], Dict[str, int]], overwrite: bool) -> None:
    """Run `build` into a fresh folder that then replaces `target`, unless `target` already holds this build.

    `build` fills the folder and returns its file count per subfolder; the manifest (version, params, counts) is
    written last, and the folder moves onto `target` in one rename, so `target` is complete or absent.
    """
    if target.exists() and not overwrite:
        manifest = _read_manifest(target)
        if manifest is None:
            raise ValueError(
                f"{target} exists but has no {MANIFEST}, so it was not written by this generator (or was damaged): "
                "delete it, pick another root, or pass overwrite=True to replace it"
            )
        if manifest.get("version") == VERSION and manifest.get("params") == params:
            wrong = _count_mismatches(target, manifest.get("files", {}))
            if not wrong:
                return
            print(f"{target} is incomplete ({'; '.join(wrong)}); generating it again", file=sys.stderr)
        else:
            print(f"{target} was generated with other settings ({manifest.get('params')}, version "
                  f"{manifest.get('version')}); generating it again with {params}, version {VERSION}", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the dataset it becomes is for everyone to read
    try:
        files = build(staging)
        _write_json({"generator": __name__, "version": VERSION, "params": params, "files": files}, staging / MANIFEST)
        if target.exists():
            retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def generate_toy_world(
    root: PathLike, seed: int = 0, num_train: int = 600, num_val: int = 40, overwrite: bool = False
) -> Path:
    """Write the toy HQ dataset under `root` in the shape of TOY_LAYOUT; returns `root`, the dataset root.

    `num_train` training images mix all four characters; each validation set (dis, coift, hrsod, thin) gets
    `num_val` images of its own character. Images are .jpg (train, dis, coift, thin: sides 200-320 px; hrsod:
    384-512 px), masks .png with values 0 and 255, paired by stem. A call whose arguments match the existing
    `root/toy/manifest.json` does nothing; other arguments regenerate the whole folder. A `root/toy` without a
    manifest is not replaced unless `overwrite` is True.
    """
    for name, value in (("seed", seed), ("num_train", num_train), ("num_val", num_val)):
        _check_count(name, value)
    root = Path(root)
    params = {"seed": int(seed), "num_train": int(num_train), "num_val": int(num_val)}

    def build(folder: Path) -> Dict[str, int]:
        files = {}
        for source_id, spec in enumerate(TOY_LAYOUT):
            character, (low, high) = _SOURCE_STYLE[spec.name]
            image_dir = folder / Path(spec.image_dir).relative_to(TOY_DIR)
            mask_dir = folder / Path(spec.mask_dir).relative_to(TOY_DIR)
            image_dir.mkdir(parents=True)
            mask_dir.mkdir(parents=True)
            count = num_train if spec.split == "train" else num_val
            for index in range(count):
                rng = np.random.default_rng([params["seed"], source_id, index])
                height, width = (int(side) for side in rng.integers(low, high, 2, endpoint=True))
                image, mask = draw_toy_object(rng, height, width, character or CHARACTERS[rng.integers(0, 4)])
                stem = f"{image_dir.parent.name}_{index:05d}"
                _save_image(image, image_dir / f"{stem}{spec.image_ext}")
                _save_mask(mask, mask_dir / f"{stem}{spec.mask_ext}")
            files[str(Path(spec.image_dir).relative_to(TOY_DIR))] = count
            files[str(Path(spec.mask_dir).relative_to(TOY_DIR))] = count
        return files

    build_once(root / TOY_DIR, params, build, overwrite)
    return root


def _place_objects(rng: np.random.Generator, height: int, width: int) -> List[Tuple[str, np.ndarray]]:
    """2-5 (category, visible mask) pairs; later objects occlude earlier ones, each keeping half its area."""
    objects: List[Tuple[str, np.ndarray, int]] = []  # category, visible mask, full area
    wanted = int(rng.integers(2, 6))
    for _ in range(wanted * 10):
        if len(objects) == wanted:
            break
        category = COCO_CATEGORIES[rng.integers(0, len(COCO_CATEGORIES))]
        builder, area_range = _CATEGORY_BUILDERS[category]
        box_h = int(rng.uniform(0.25, 0.65) * height)
        box_w = int(np.clip(box_h * rng.uniform(0.7, 1.4), _MIN_SIDE, 0.8 * width))
        box_h = max(box_h, _MIN_SIDE)
        local = _draw_mask(rng, box_h, box_w, builder, area_range, category)
        top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
        mask = np.zeros((height, width), dtype=bool)
        mask[top : top + box_h, left : left + box_w] = local
        remaining = [visible & ~mask for _, visible, _ in objects]
        if all(kept.sum() >= max(64, 0.5 * area) for kept, (_, _, area) in zip(remaining, objects)):
            objects = [(name, kept, area) for kept, (name, _, area) in zip(remaining, objects)]
            objects.append((category, mask, int(mask.sum())))
    return [(name, visible) for name, visible, _ in objects]


def _jitter_box(rng: np.random.Generator, box: Sequence[float], height: int, width: int,
                scale: float = 0.1) -> List[float]:
    """Move each side of an xywh box by up to `scale` x the box's size (DN-DETR box noise), kept in the image."""
    x, y, w, h = box
    x0, x1 = x + rng.uniform(-scale, scale) * w, x + w + rng.uniform(-scale, scale) * w
    y0, y1 = y + rng.uniform(-scale, scale) * h, y + h + rng.uniform(-scale, scale) * h
    x0, x1 = np.clip((x0, x1), 0, width)
    y0, y1 = np.clip((y0, y1), 0, height)
    return [round(float(x0), 2), round(float(y0), 2), round(float(max(x1 - x0, 1.0)), 2),
            round(float(max(y1 - y0, 1.0)), 2)]


def generate_toy_coco(root: PathLike, seed: int = 0, num_images: int = 40, overwrite: bool = False) -> Path:
    """Write a COCO-format instance set under `root/toy_coco`; returns that folder.

    Holds images/*.jpg (sides 280-420 px, 2-5 objects each, later objects occluding earlier ones so masks never
    overlap), instances.json (COCO ground truth: RLE segmentation with str counts, area, xywh bbox, iscrowd 0;
    categories COCO_CATEGORIES with ids 1-4) and detections.json (a detector's output: one box per found object,
    each side moved by up to 10% of the box size, score 0.5-1.0; about 8% of objects missed; false positives
    with scores below 0.3). Same idempotence rules as generate_toy_world.
    """
    return _generate_instances(Path(root) / COCO_DIR, _COCO_SOURCE_ID, seed, num_images, overwrite, detections=True)


def generate_toy_scenes(root: PathLike, seed: int = 0, num_images: int = 300, overwrite: bool = False) -> Path:
    """Write multi-object training scenes for the toy SAM under `root/toy_scenes`; returns that folder.

    The toy SAM's stand-in for SA-1B: scenes drawn like generate_toy_coco's (images/*.jpg and instances.json,
    no detections), but from their own random streams, so no scene is one of the toy COCO evaluation images.
    Scenes with several objects are what teach a SAM to follow its box: on the single-object training images
    any box gives the same answer. Same idempotence rules as generate_toy_world.
    """
    return _generate_instances(Path(root) / SCENES_DIR, _SCENES_SOURCE_ID, seed, num_images, overwrite, detections=False)


def read_toy_scenes(folder: PathLike):
    """The scenes of `generate_toy_scenes` (its returned folder) as a CocoInstanceSource, one sample per object."""
    from .coco_source import CocoInstanceSource

    folder = Path(folder)
    if not (folder / "instances.json").is_file():
        raise FileNotFoundError(
            f"no toy scenes at {folder} (it has no instances.json): make them with "
            "hqsam.data.generate_toy_scenes(data_root), or pass scenes=None to train on single objects only"
        )
    return CocoInstanceSource(folder / "images", folder / "instances.json", name="toy-scenes")


def _generate_instances(target: Path, source_id: int, seed: int, num_images: int, overwrite: bool,
                        detections: bool) -> Path:
    from pycocotools import mask as mask_utils

    _check_count("seed", seed)
    _check_count("num_images", num_images)
    params = {"seed": int(seed), "num_images": int(num_images)}
    categories = [{"id": i + 1, "name": name, "supercategory": "toy"} for i, name in enumerate(COCO_CATEGORIES)]
    category_id = {category["name"]: category["id"] for category in categories}

    def build(folder: Path) -> Dict[str, int]:
        (folder / "images").mkdir()
        images, annotations, found = [], [], []
        for index in range(num_images):
            rng = np.random.default_rng([params["seed"], source_id, index])
            height, width = (int(side) for side in rng.integers(*_COCO_SIDE, 2, endpoint=True))
            objects = _place_objects(rng, height, width)
            image = _paint(rng, [mask for _, mask in objects])
            image_id = index + 1
            file_name = f"{image_id:012d}.jpg"
            _save_image(image, folder / "images" / file_name)
            images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
            for name, mask in objects:
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                bbox = [float(v) for v in mask_utils.toBbox(rle)]
                rle["counts"] = rle["counts"].decode("ascii")
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id[name],
                    "segmentation": rle, "area": int(mask.sum()), "bbox": bbox, "iscrowd": 0,
                })
                if detections and rng.random() >= 0.08:
                    found.append({"image_id": image_id, "category_id": category_id[name],
                                  "bbox": _jitter_box(rng, bbox, height, width),
                                  "score": round(float(rng.uniform(0.5, 1.0)), 4)})
            for _ in range(rng.poisson(0.7) if detections else 0):
                w, h = rng.uniform(0.1, 0.4) * width, rng.uniform(0.1, 0.4) * height
                x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
                found.append({"image_id": image_id, "category_id": int(rng.integers(1, len(categories) + 1)),
                              "bbox": [round(float(v), 2) for v in (x, y, w, h)],
                              "score": round(float(rng.uniform(0.01, 0.3)), 4)})
        info = {"description": "hqsam toy COCO" if detections else "hqsam toy scenes", "version": str(VERSION)}
        _write_json({"info": info, "licenses": [], "images": images, "annotations": annotations,
                     "categories": categories}, folder / "instances.json")
        if detections:
            _write_json(found, folder / "detections.json")
        return {"images": num_images}

    build_once(target, params, build, overwrite)
    return target
