"""The toy world's object masks: intricate shapes of four characters, and the four toy COCO categories.

HQ-SAM's gain over SAM is in boundaries and thin structures, which SAM's low-resolution masks smear. The tiny SAM
(the `toy` backbone: 128 px input, 64 x 64 low-resolution masks) resizes an image's longer side to 128 px; toy
images are 96-176 px, so one mask cell spans about 2 px of one, as a cell of the paper's 256 x 256 masks spans 4 px
of its 1024 px input. Every object has detail at that scale: wires and legs MIN_STROKE (3) px wide and more, holes,
lattices, ragged outlines. A fine 64 x 64 mask can hold it (area-averaged onto that grid, the GT keeps about 87-98%
IoU per character); a coarse one, as SAM is trained on, cannot (onto a 32 x 32 grid: about 63% on the dis and 68% on
the thin character, 92-94% on the solid ones), the gap between SAM and HQ-SAM in the paper.

Objects come in four characters, mirroring the four HQ validation sets:

* "dis": the most intricate: lattices, grilles, pylons, perforated plates, dense branching, many wires (DIS5K).
* "coift": mostly solid bodies with a few thin parts: legs, antennae, handles (COIFT).
* "hrsod": one large solid object with a finely ragged outline, in larger images (HRSOD).
* "thin": wiry objects: insects, chairs, bicycles, plants, cables (ThinObject5K).

The toy COCO scenes draw from COCO_CATEGORIES instead: wires, lattices, blobs and insects.
"""

import math
from typing import Callable, Dict, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .geometry import (
    MIN_STROKE, Point, as_mask, bars, blank_canvas, blob_points, disk, edge_points, erode, jointed, line, near_centre, polar,
    punch_holes, wander,
)

MaskBuilder = Callable[[np.random.Generator, int, int], np.ndarray]

CHARACTERS = ("dis", "coift", "hrsod", "thin")
COCO_CATEGORIES = ("wire", "lattice", "blob", "insect")
MIN_SIDE = 64  # px, both sides of an object's canvas
# Foreground area as a fraction of the canvas, per character; drawings outside the range are drawn again.
_AREA_RANGE = {"dis": (0.05, 0.55), "coift": (0.08, 0.55), "hrsod": (0.18, 0.6), "thin": (0.05, 0.45)}
_MAX_ATTEMPTS = 200


def _solid(rng: np.random.Generator, height: int, width: int, size: Tuple[float, float], ragged: Tuple[float, float],
           spikes: int = 0) -> Tuple[Image.Image, ImageDraw.ImageDraw]:
    """A body of one to three overlapping lumpy shapes, radius `size` x the shorter side."""
    canvas, draw = blank_canvas(height, width)
    center, side = near_centre(rng, height, width), min(height, width)
    radius = rng.uniform(*size) * side
    aspect_limit = math.sqrt(width / height)
    parts = [(center, radius)]
    for _ in range(rng.integers(0, 3)):
        parts.append((polar(center, radius * rng.uniform(0.4, 0.8), rng.uniform(0, 2 * math.pi)),
                      radius * rng.uniform(0.4, 0.75)))
    for part_center, part_radius in parts:
        points = blob_points(rng, part_center, part_radius, ragged=rng.uniform(*ragged),
                             aspect=aspect_limit * rng.uniform(0.75, 1.3), angle=rng.normal(0, 0.3),
                             spikes=spikes)
        draw.polygon(points, fill=255)
    return canvas, draw


def _coift(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A mostly solid body with a few legs, antennae or handles, sometimes a hole."""
    canvas, draw = _solid(rng, height, width, size=(0.18, 0.3), ragged=(0.2, 1.0))
    body = as_mask(canvas)
    side = min(height, width)
    for start, heading in edge_points(rng, body, int(rng.integers(1, 5))):
        start = polar(start, -3, heading)  # root the part inside the body
        if rng.random() < 0.25:  # a handle: an arc out of the body and back, enclosing a hole
            r = rng.uniform(0.06, 0.12) * side
            center = polar(start, r * 0.6, heading)
            angles = np.linspace(heading - math.pi * 0.8, heading + math.pi * 0.8, 24)
            line(draw, [polar(center, r, a) for a in angles], rng.uniform(2, 4))
        else:
            length = rng.uniform(0.2, 0.45) * side
            segments = int(rng.integers(1, 4))
            jointed(draw, rng, start, heading + rng.normal(0, 0.4), [length / segments] * segments,
                    np.linspace(rng.uniform(2, 4), rng.uniform(1, 2), segments), bend=0.5)
    if rng.random() < 0.4:
        punch_holes(draw, rng, body, int(rng.integers(1, 3)), (2, 0.04 * side))
    return as_mask(canvas)


def _hrsod(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A large solid body whose outline is ragged at the scale of a few pixels, with a rare thin part or hole."""
    canvas, draw = _solid(rng, height, width, size=(0.26, 0.4), ragged=(1.5, 4.0), spikes=int(rng.integers(0, 40)))
    body = as_mask(canvas)
    side = min(height, width)
    if rng.random() < 0.4:
        for start, heading in edge_points(rng, body, int(rng.integers(1, 3))):
            jointed(draw, rng, polar(start, -3, heading), heading, [rng.uniform(0.05, 0.15) * side] * 2,
                    (rng.uniform(2, 4), rng.uniform(1, 3)), bend=0.4)
    if rng.random() < 0.3:
        punch_holes(draw, rng, body, 1, (3, 0.05 * side))
    return as_mask(canvas)


def _lattice(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A lattice filling `region`: bars in one to three directions, MIN_STROKE px or a little more wide, with a
    frame around it."""
    height, width = region.shape
    angle, spacing = rng.uniform(0, math.pi), rng.uniform(7, 15)
    directions = int(rng.choice((1, 2, 2, 3)))
    pattern = np.zeros_like(region)
    for i in range(directions):
        pattern |= bars(height, width, spacing * rng.uniform(0.9, 1.3), max(MIN_STROKE, rng.uniform(1.2, 4.0)),
                        angle + i * math.pi / directions, rng.uniform(0, spacing))
    frame = region & ~erode(region, int(rng.integers(MIN_STROKE, 5)))
    return (pattern & region) | frame


def _grille(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A lattice in a lumpy, elliptic or rectangular outline, sometimes on posts (fences, grilles, nets)."""
    canvas, draw = blank_canvas(height, width)
    center, side = near_centre(rng, height, width), min(height, width)
    kind = rng.integers(0, 3)
    if kind == 0:
        draw.polygon(blob_points(rng, center, rng.uniform(0.25, 0.4) * side, ragged=0.5), fill=255)
    elif kind == 1:
        rx, ry = rng.uniform(0.2, 0.42) * width, rng.uniform(0.2, 0.42) * height
        draw.ellipse((center[0] - rx, center[1] - ry, center[0] + rx, center[1] + ry), fill=255)
    else:
        hw, hh, a = rng.uniform(0.2, 0.4) * width, rng.uniform(0.15, 0.35) * height, rng.normal(0, 0.3)
        corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
        draw.polygon([(center[0] + x * math.cos(a) - y * math.sin(a), center[1] + x * math.sin(a) + y * math.cos(a))
                      for x, y in corners], fill=255)
    mask = _lattice(rng, as_mask(canvas))
    canvas, draw = blank_canvas(height, width)
    if rng.random() < 0.5 and mask.any():  # posts or legs below the lattice
        ys, xs = np.nonzero(mask)
        bottom = ys.max()
        for x in np.linspace(xs.min() + 2, xs.max() - 2, int(rng.integers(2, 5))):
            line(draw, ((x, bottom - 4), (x + rng.normal(0, 3), bottom + rng.uniform(0.1, 0.25) * side)),
                 rng.uniform(2, 4))
    return mask | as_mask(canvas)


def _pylon(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A tapering truss tower with cross-arms (an electricity pylon, a crane mast)."""
    canvas, draw = blank_canvas(height, width)
    cx = width / 2 + rng.normal(0, 0.05 * width)
    top, bottom = rng.uniform(0.05, 0.2) * height, rng.uniform(0.85, 0.97) * height
    half_bottom, half_top = rng.uniform(0.12, 0.3) * width, rng.uniform(0.02, 0.08) * width
    draw.polygon([(cx - half_top, top), (cx + half_top, top), (cx + half_bottom, bottom), (cx - half_bottom, bottom)],
                 fill=255)
    mask = _lattice(rng, as_mask(canvas))
    canvas, draw = blank_canvas(height, width)
    for _ in range(rng.integers(1, 4)):
        y = rng.uniform(top, top + 0.4 * (bottom - top))
        reach = rng.uniform(0.2, 0.42) * width
        line(draw, ((cx - reach, y), (cx + reach, y)), rng.uniform(2, 4))
        for sign in (-1, 1):  # insulators and wires hanging from the arm's ends
            line(draw, ((cx + sign * reach, y), (cx + sign * reach, y + rng.uniform(6, 20))), 1)
    return mask | as_mask(canvas)


def _perforated(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A plate full of small holes, with a few wires attached."""
    canvas, draw = _solid(rng, height, width, size=(0.2, 0.32), ragged=(0.3, 1.5))
    body = as_mask(canvas)
    punch_holes(draw, rng, body, int(rng.integers(8, 30)), (1.5, 4.5))
    _wires(draw, rng, body, int(rng.integers(0, 4)), (1, 2))
    return as_mask(canvas)


def _wires(draw: ImageDraw.ImageDraw, rng: np.random.Generator, body: np.ndarray, count: int,
           width: Tuple[float, float]) -> None:
    """`count` wandering wires leaving the body's edge."""
    height, width_px = body.shape
    for start, heading in edge_points(rng, body, count):
        points = wander(rng, polar(start, -2, heading), heading, rng.uniform(0.3, 0.9) * min(body.shape),
                        height, width_px)
        line(draw, points, rng.uniform(*width))


def _branch(draw: ImageDraw.ImageDraw, rng: np.random.Generator, start: Point, heading: float, length: float,
            width: float, depth: int, spread: float, leaf: float) -> None:
    end = polar(start, length, heading + rng.normal(0, 0.15))
    line(draw, (start, end), width)
    if depth == 0:
        if rng.random() < leaf:
            r = rng.uniform(2.5, 6)
            draw.polygon(blob_points(rng, polar(end, r * 0.8, heading), r, aspect=rng.uniform(1.3, 2.0),
                                     angle=heading), fill=255)
        return
    for _ in range(3 if rng.random() < 0.25 else 2):
        _branch(draw, rng, end, heading + rng.uniform(-spread, spread), length * rng.uniform(0.6, 0.85),
                max(1.0, width * 0.7), depth - 1, spread, leaf)


def _tree(rng: np.random.Generator, height: int, width: int, depth: Tuple[int, int] = (4, 6)) -> np.ndarray:
    """A branching plant or coral: a trunk splitting into ever thinner twigs, sometimes with leaves."""
    canvas, draw = blank_canvas(height, width)
    if rng.random() < 0.7:  # one trunk growing up from the bottom
        start, heading, length, trunks = (width / 2 + rng.normal(0, 0.05 * width), 0.95 * height), -math.pi / 2, \
            0.25 * height, 1
    else:  # several radiating from the middle
        start, heading, length = near_centre(rng, height, width), rng.uniform(0, 2 * math.pi), 0.18 * min(height, width)
        trunks = int(rng.integers(3, 6))
    leaf = rng.uniform(0.2, 1)
    for _ in range(trunks):
        _branch(draw, rng, start, heading + rng.normal(0, 0.2), length * rng.uniform(0.7, 1.0), rng.uniform(4, 7),
                int(rng.integers(*depth, endpoint=True)), rng.uniform(0.35, 0.8), leaf)
        heading += rng.uniform(1.0, 2.0)
    return as_mask(canvas)


def _wheel(draw: ImageDraw.ImageDraw, rng: np.random.Generator, center: Point, radius: float, spokes: int) -> None:
    """A rim, a tyre (sometimes double), spokes and a hub."""
    x, y = center
    tyre = max(MIN_STROKE, rng.uniform(2, 4))
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=255, width=int(round(tyre)))
    if rng.random() < 0.5:
        inner = radius - tyre - rng.uniform(2, 4)
        draw.ellipse((x - inner, y - inner, x + inner, y + inner), outline=255, width=MIN_STROKE)
    offset = rng.uniform(0, 2 * math.pi)
    for i in range(spokes):
        line(draw, (center, polar(center, radius - 1, offset + 2 * math.pi * i / spokes)), 1)
    disk(draw, center, rng.uniform(2, 4))


def _bicycle(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Two spoked wheels, a tube frame, handlebar and saddle."""
    canvas, draw = blank_canvas(height, width)
    radius = min(0.19 * width, 0.28 * height) * rng.uniform(0.85, 1.0)
    cx, cy = near_centre(rng, height, width, spread=0.03)
    rear, front = (cx - 1.3 * radius, cy + 0.5 * radius), (cx + 1.3 * radius, cy + 0.5 * radius)
    spokes = int(rng.integers(10, 28))
    for hub in (rear, front):
        _wheel(draw, rng, hub, radius, spokes)
    crank = (cx - 0.1 * radius, cy + 0.6 * radius)
    seat = (cx - 0.55 * radius, cy - 0.6 * radius)
    head = (cx + 0.85 * radius, cy - 0.55 * radius)
    tube = rng.uniform(2, 4)
    for a, b in ((rear, crank), (rear, seat), (crank, seat), (seat, head), (crank, head), (head, front)):
        line(draw, (a, b), tube)
    bar = polar(head, 0.35 * radius, -math.pi / 2 - rng.uniform(0, 0.6))
    line(draw, (head, bar, polar(bar, 0.3 * radius, rng.uniform(-0.5, 0.5) + math.pi)), tube * 0.8)
    saddle = polar(seat, 0.2 * radius, -math.pi / 2)
    line(draw, (seat, saddle), tube)
    draw.polygon(blob_points(rng, saddle, 0.18 * radius, aspect=2.0), fill=255)
    chainring = rng.uniform(0.15, 0.25) * radius
    draw.ellipse((crank[0] - chainring, crank[1] - chainring, crank[0] + chainring, crank[1] + chainring),
                 outline=255, width=MIN_STROKE)
    line(draw, (polar(crank, 0.35 * radius, 1.0), polar(crank, 0.35 * radius, 1.0 + math.pi)), 2)
    mask = as_mask(canvas)
    return mask[:, ::-1].copy() if rng.random() < 0.5 else mask


def _chair(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A chair or stool seen from the front-side: seat slab, thin legs, stretchers, a slatted back."""
    canvas, draw = blank_canvas(height, width)
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
        line(draw, ((x, y + 2), foot), leg)
        feet.append(foot)
    if rng.random() < 0.7:  # stretchers between the legs
        t = rng.uniform(0.5, 0.75)
        at = [(x + t * (f[0] - x), y + t * (f[1] - y)) for (x, y), f in zip((fl, fr, bl, br), feet)]
        for a, b in ((0, 1), (0, 2), (1, 3)):
            line(draw, (at[a], at[b]), rng.uniform(1, 2.5))
    if has_back:
        top_left, top_right = (bl[0], bl[1] - back_height), (br[0], br[1] - back_height)
        upright = rng.uniform(2, 4)
        line(draw, (bl, top_left), upright)
        line(draw, (br, top_right), upright)
        line(draw, (top_left, top_right), rng.uniform(3, 7))
        slats = int(rng.integers(1, 7))
        for f in np.linspace(0, 1, slats + 2)[1:-1]:
            x = bl[0] + f * seat_width
            line(draw, ((x, bl[1]), (x, top_left[1])), rng.uniform(1, 3))
    mask = as_mask(canvas)
    return mask[:, ::-1].copy() if rng.random() < 0.5 else mask


def _insect(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Head, thorax and abdomen along an axis, six jointed legs thinning to MIN_STROKE px, long antennae, sometimes wings."""
    canvas, draw = blank_canvas(height, width)
    side = min(height, width)
    center, axis = near_centre(rng, height, width, spread=0.04), rng.uniform(0, 2 * math.pi)
    body = rng.uniform(0.45, 0.6) * side
    abdomen_len, thorax_len, head_len = body * 0.5, body * 0.22, body * 0.14
    girth = rng.uniform(0.4, 0.65)
    thorax = center
    abdomen = polar(center, -(thorax_len + abdomen_len) / 2, axis)
    head = polar(center, (thorax_len + head_len) / 2 + 1, axis)
    if rng.random() < 0.4:  # wings: veined outlines over the abdomen
        for sign in (-1, 1):
            wing_axis = axis + math.pi + sign * rng.uniform(0.2, 0.6)
            wing_len = rng.uniform(0.5, 0.8) * body
            wing_center = polar(thorax, wing_len / 2, wing_axis)
            points = blob_points(rng, wing_center, wing_len / 2 / 1.8, aspect=1.8, angle=wing_axis)
            line(draw, points + points[:1], 1)
            for _ in range(rng.integers(2, 5)):
                vein = polar(thorax, wing_len * rng.uniform(0.6, 0.95), wing_axis + rng.normal(0, 0.12))
                line(draw, (thorax, vein), 1)
    for part, length, fatness in ((abdomen, abdomen_len, girth), (thorax, thorax_len, 0.8), (head, head_len, 0.9)):
        r = length / 2
        draw.polygon(blob_points(rng, part, r * math.sqrt(fatness), ragged=0.3, aspect=1 / math.sqrt(fatness),
                                 angle=axis), fill=255)
    leg_length = rng.uniform(0.35, 0.55) * side
    for sign in (-1, 1):
        for i, sweep in enumerate((0.6, 0.0, -0.7)):
            start = polar(thorax, (1 - i) * thorax_len * 0.3, axis)
            heading = axis + sign * (math.pi / 2 - sweep) + rng.normal(0, 0.15)
            point, turn = start, sign * rng.uniform(0.3, 0.8) * (1 if i == 2 else -1)
            for length, leg_width in zip((0.3, 0.42, 0.28), (rng.uniform(2.5, 4), rng.uniform(1.5, 3), 1)):
                end = polar(point, length * leg_length, heading)
                line(draw, (point, end), leg_width)
                point, heading = end, heading + turn + rng.normal(0, 0.2)
    for sign in (-1, 1):
        antenna = wander(rng, head, axis + sign * rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.4) * side, height,
                         width, step=2.0, wiggle=0.08)
        line(draw, antenna, 1)
    return as_mask(canvas)


def _cable(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One or two connectors with long, looping cables 2-4 px thick (headphones, chargers)."""
    canvas, draw = blank_canvas(height, width)
    center, side = near_centre(rng, height, width, spread=0.12), min(height, width)
    angle = rng.uniform(0, 2 * math.pi)
    hw, hh = rng.uniform(0.04, 0.08) * side, rng.uniform(0.02, 0.05) * side
    corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
    draw.polygon([(center[0] + x * math.cos(angle) - y * math.sin(angle),
                   center[1] + x * math.sin(angle) + y * math.cos(angle)) for x, y in corners], fill=255)
    thickness = rng.uniform(2.5, 5)
    for _ in range(rng.integers(1, 4)):
        points = wander(rng, center, angle + rng.normal(0, 0.3), rng.uniform(2.0, 3.5) * side, height, width,
                        wiggle=rng.uniform(0.05, 0.2), curl=rng.choice((0.0, rng.uniform(-0.4, 0.4))))
        line(draw, points, thickness)
        if rng.random() < 0.3:  # a plug at the far end
            disk(draw, points[-1], thickness * rng.uniform(1.5, 2.5))
    return as_mask(canvas)


def _dis(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """The most intricate: a lattice, a pylon, a perforated plate or a dense tree, often with extra wires."""
    builder = (_grille, _pylon, _perforated, _dense_tree, _spoked)[rng.integers(0, 5)]
    mask = builder(rng, height, width)
    if rng.random() < 0.5:
        canvas, draw = blank_canvas(height, width)
        _wires(draw, rng, mask, int(rng.integers(1, 5)), (1, 2.5))
        mask = mask | as_mask(canvas)
    return mask


def _dense_tree(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return _tree(rng, height, width, depth=(5, 7))


def _spoked(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A wheel or rose window: rings and many spokes, with a ragged gear rim sometimes."""
    canvas, draw = blank_canvas(height, width)
    center = near_centre(rng, height, width, spread=0.04)
    radius = rng.uniform(0.3, 0.42) * min(height, width)
    for ring in range(int(rng.integers(1, 4))):
        _wheel(draw, rng, center, radius * (1 - 0.3 * ring), int(rng.integers(12, 40)))
    if rng.random() < 0.5:
        teeth = int(rng.integers(16, 40))
        for i in range(teeth):
            a = 2 * math.pi * i / teeth
            line(draw, (polar(center, radius - 2, a), polar(center, radius + rng.uniform(3, 7), a)), 3)
    return as_mask(canvas)


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
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"image of {height}x{width} px is too small: both sides must be at least {MIN_SIDE} px")
    return _draw_mask(rng, height, width, _CHARACTER_BUILDERS[character], _AREA_RANGE[character], character)


def draw_category_mask(rng: np.random.Generator, height: int, width: int, category: str) -> np.ndarray:
    """One object's exact mask (bool, height x width) of a toy COCO category (one of COCO_CATEGORIES)."""
    builder, area_range = _CATEGORY_BUILDERS[category]
    return _draw_mask(rng, height, width, builder, area_range, category)
