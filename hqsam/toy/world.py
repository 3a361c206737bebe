"""A procedural world of intricate objects: the CPU stand-in for HQSeg-44K and for COCO.

`generate_toy_world` writes single objects (`hqsam.toy.shapes`, painted by `hqsam.toy.paint`) in the shape of
`TOY_LAYOUT`; `generate_toy_coco` writes a COCO-format instance set (several objects per image, occluding each
other) with detector-style boxes, and `generate_toy_scenes` more such scenes for training the toy SAM. All are
deterministic by seed (each image is drawn from its own `keyed_rng(seed, source_id, index)`, so changing a count
keeps the earlier images) and built with `hqsam.io.build_once`: in a temporary folder that replaces the target in
one rename (an interrupted run never looks complete), ending with a manifest that makes a second call with the
same arguments do nothing.
"""

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from ..data.layout import TOY_LAYOUT
from ..io import atomic_write, build_once
from ..seeding import keyed_rng
from .paint import draw_toy_object, paint_masks
from .shapes import CHARACTERS, COCO_CATEGORIES, MIN_SIDE, draw_category_mask

PathLike = Union[str, Path]

VERSION = 2
TOY_DIR = Path(TOY_LAYOUT[0].image_dir).parts[0]
COCO_DIR = "toy_coco"
SCENES_DIR = "toy_scenes"

# Character drawn (None: each image picks one of CHARACTERS) and the range of image side lengths, per source: about
# the toy model's 128 px input (see hqsam.toy.shapes), HRSOD's a little larger as HRSOD's images are.
_SOURCE_STYLE: Dict[str, Tuple[Optional[str], Tuple[int, int]]] = {
    "Toy-TR": (None, (96, 144)),
    "Toy-DIS": ("dis", (96, 144)),
    "Toy-COIFT": ("coift", (96, 144)),
    "Toy-HRSOD": ("hrsod", (128, 176)),
    "Toy-Thin": ("thin", (96, 144)),
}
_COCO_SOURCE_ID = len(TOY_LAYOUT)  # COCO image i is drawn from keyed_rng(seed, _COCO_SOURCE_ID, i)
_SCENES_SOURCE_ID = _COCO_SOURCE_ID + 1
_COCO_SIDE = (128, 192)


def _save_image(image: np.ndarray, path: Path) -> None:
    # 4:4:4 chroma so that thin wires keep their colour; quality high enough that JPEG does not eat them.
    Image.fromarray(image).save(path, quality=95, subsampling=0)


def _save_mask(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def _write_json(data: object, path: Path) -> None:
    with atomic_write(path, "w") as file:
        json.dump(data, file, indent=1)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def generate_toy_world(
    root: PathLike, seed: int = 0, num_train: int = 600, num_val: int = 40, overwrite: bool = False
) -> Path:
    """Write the toy HQ dataset under `root` in the shape of TOY_LAYOUT; returns `root`, the dataset root.

    `num_train` training images mix all four characters; each validation set (dis, coift, hrsod, thin) gets
    `num_val` images of its own character. Images are .jpg (train, dis, coift, thin: sides 96-144 px; hrsod:
    128-176 px), masks .png with values 0 and 255, paired by stem. A call whose arguments match the existing
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
                rng = keyed_rng(params["seed"], source_id, index)
                height, width = (int(side) for side in rng.integers(low, high, 2, endpoint=True))
                image, mask = draw_toy_object(rng, height, width, character or CHARACTERS[rng.integers(0, 4)])
                stem = f"{image_dir.parent.name}_{index:05d}"
                _save_image(image, image_dir / f"{stem}{spec.image_ext}")
                _save_mask(mask, mask_dir / f"{stem}{spec.mask_ext}")
            files[str(Path(spec.image_dir).relative_to(TOY_DIR))] = count
            files[str(Path(spec.mask_dir).relative_to(TOY_DIR))] = count
        return files

    build_once(root / TOY_DIR, params, build, overwrite, version=VERSION)
    return root


def _place_objects(rng: np.random.Generator, height: int, width: int) -> List[Tuple[str, np.ndarray]]:
    """2-5 (category, visible mask) pairs; later objects occlude earlier ones, each keeping half its area."""
    objects: List[Tuple[str, np.ndarray, int]] = []  # category, visible mask, full area
    wanted = int(rng.integers(2, 6))
    for _ in range(wanted * 10):
        if len(objects) == wanted:
            break
        category = COCO_CATEGORIES[rng.integers(0, len(COCO_CATEGORIES))]
        box_h = int(rng.uniform(0.25, 0.65) * height)
        box_w = int(np.clip(box_h * rng.uniform(0.7, 1.4), MIN_SIDE, 0.8 * width))
        box_h = max(box_h, MIN_SIDE)
        local = draw_category_mask(rng, box_h, box_w, category)
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
    """A detector's box for an xywh GT box: each side moved on its own, uniformly by up to `scale` x the box's
    width (left, right) or height (top, bottom); then clipped to the image, at least 1 px wide and high, xywh
    rounded to 0.01 px."""
    x, y, w, h = box
    x0, x1 = x + rng.uniform(-scale, scale) * w, x + w + rng.uniform(-scale, scale) * w
    y0, y1 = y + rng.uniform(-scale, scale) * h, y + h + rng.uniform(-scale, scale) * h
    x0, x1 = np.clip((x0, x1), 0, width)
    y0, y1 = np.clip((y0, y1), 0, height)
    return [round(float(x0), 2), round(float(y0), 2), round(float(max(x1 - x0, 1.0)), 2),
            round(float(max(y1 - y0, 1.0)), 2)]


def generate_toy_coco(root: PathLike, seed: int = 0, num_images: int = 40, overwrite: bool = False) -> Path:
    """Write a COCO-format instance set under `root/toy_coco`; returns that folder.

    Holds images/*.jpg (sides 128-192 px, 2-5 objects each, later objects occluding earlier ones so masks never
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
    from ..data.coco_source import CocoInstanceSource

    folder = Path(folder)
    if not (folder / "instances.json").is_file():
        raise FileNotFoundError(
            f"no toy scenes at {folder} (it has no instances.json): make them with "
            "hqsam.toy.generate_toy_scenes(data_root), or pass scenes=None to train on single objects only"
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
            rng = keyed_rng(params["seed"], source_id, index)
            height, width = (int(side) for side in rng.integers(*_COCO_SIDE, 2, endpoint=True))
            objects = _place_objects(rng, height, width)
            image = paint_masks(rng, [mask for _, mask in objects])
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

    build_once(target, params, build, overwrite, version=VERSION)
    return target
