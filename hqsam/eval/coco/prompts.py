"""COCO prompts: a detector's boxes (COCO's detection-results format) or the GT boxes, each checked; what is left
out is counted and named in a `SkipReport`."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from pycocotools.coco import COCO

from ...data.sources import image_size

PathLike = Union[str, Path]
MAX_EXAMPLES = 5


@dataclass
class SkipReport:
    """What `predict_coco` left out and why.

    `counts` and `examples` are per reason, in detections (a few examples each, naming the detection by its index
    in the detections list); `images` maps the id of each image left out of the evaluation to the reason.
    """

    counts: Dict[str, int] = field(default_factory=dict)
    examples: Dict[str, List[str]] = field(default_factory=dict)
    images: Dict[int, str] = field(default_factory=dict)

    def add(self, reason: str, example: str, count: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + count
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(example)

    @property
    def total(self) -> int:
        """Detections skipped, all reasons together."""
        return sum(self.counts.values())

    def to_dict(self) -> Dict[str, Any]:
        return {"counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()},
                "images": {str(k): v for k, v in self.images.items()}}

    def __str__(self) -> str:
        if not self.counts and not self.images:
            return "nothing skipped"
        lines = [f"{self.total} detections skipped"]
        for reason, count in self.counts.items():
            lines.append(f"  {reason}: {count}, e.g. {'; '.join(self.examples[reason][:2])}")
        if self.images:
            lines.append(f"{len(self.images)} images not evaluated")
            for image_id, reason in list(self.images.items())[:MAX_EXAMPLES]:
                lines.append(f"  image {image_id}: {reason}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Prompt:
    box: np.ndarray  # x0, y0, x1, y1 in pixels, float64
    category_id: int
    score: float


def load_detections(detections: Union[PathLike, Sequence[dict]]) -> List[dict]:
    """Detections in COCO's detection-results format, from a JSON file or as given; ValueError if not a list."""
    source = "the detections list"
    if isinstance(detections, (str, Path)):
        path = Path(detections)
        if not path.is_file():
            raise FileNotFoundError(
                f"detections file {path} does not exist: give a detector's boxes in COCO's results format "
                "(the paper used FocalNet-DINO's on val2017; no download of them is published), or prompt with "
                "the GT boxes instead (oracle=True, `hqsam eval coco --oracle`)"
            )
        text = path.read_text()
        if not text.strip():
            raise ValueError(f"detections file {path} is empty: it should hold a JSON list of detections")
        try:
            detections = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"detections file {path} is not valid JSON ({error})") from None
        source = str(path)
    if isinstance(detections, dict):
        hint = " (this looks like a COCO instances file, not detections)" if "annotations" in detections else ""
        raise ValueError(
            f"{source} must be a list of detections {{image_id, category_id, bbox: [x, y, w, h], score}}, "
            f"got an object{hint}"
        )
    if not isinstance(detections, (list, tuple)):
        raise ValueError(f"{source} must be a list of detections, got {type(detections).__name__}")
    if len(detections) == 0:
        raise ValueError(f"{source} holds no detections: there is nothing to prompt with")
    return list(detections)


def detection_prompts(
    detections: List[dict], coco: COCO, selected: set, score_threshold: float, skipped: SkipReport
) -> Dict[int, List[Prompt]]:
    prompts: Dict[int, List[Prompt]] = {}
    for index, detection in enumerate(detections):
        name = f"detection {index}"
        try:
            image_id, category_id = detection["image_id"], detection["category_id"]
            box = np.asarray(detection["bbox"], dtype=np.float64)
            score = float(detection["score"])
            if box.shape != (4,):
                raise ValueError(f"bbox has shape {box.shape}, not 4 numbers x, y, w, h")
            if not math.isfinite(score):
                raise ValueError(f"score is {score}")
        except (TypeError, KeyError, ValueError) as error:
            skipped.add("malformed detection", f"{name}: {error!r} in {str(detection)[:120]}")
            continue
        if not _is_id(image_id) or int(image_id) not in coco.imgs:
            skipped.add("unknown image id", f"{name}: image_id {image_id!r}")
            continue
        if not _is_id(category_id) or int(category_id) not in coco.cats:
            skipped.add("unknown category id", f"{name}: category_id {category_id!r}")
            continue
        image_id = int(image_id)
        if image_id not in selected:
            continue  # left out by max_images, on request
        if score < score_threshold:
            skipped.add("score below threshold", f"{name}: score {score} < {score_threshold}")
            continue
        prompt = _prompt(box, category_id, score, coco.imgs[image_id], name, skipped)
        if prompt is not None:
            prompts.setdefault(image_id, []).append(prompt)
    return prompts


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def oracle_prompts(coco: COCO, selected: List[int], skipped: SkipReport) -> Dict[int, List[Prompt]]:
    prompts: Dict[int, List[Prompt]] = {}
    for image_id in selected:
        for annotation in coco.imgToAnns.get(image_id, []):
            if annotation.get("iscrowd", 0):
                continue
            box = np.asarray(annotation["bbox"], dtype=np.float64)
            name = f"annotation {annotation['id']}"
            prompt = _prompt(box, annotation["category_id"], 1.0, coco.imgs[image_id], name, skipped)
            if prompt is not None:
                prompts.setdefault(image_id, []).append(prompt)
    return prompts


def _prompt(box: np.ndarray, category_id: int, score: float, image: dict, name: str,
            skipped: SkipReport) -> Optional[Prompt]:
    x, y, w, h = box
    if not np.isfinite(box).all() or w <= 0 or h <= 0:
        skipped.add("invalid box", f"{name}: bbox {box.tolist()} (x, y, w, h with w, h > 0 expected)")
        return None
    if x >= image["width"] or y >= image["height"] or x + w <= 0 or y + h <= 0:
        skipped.add("box outside the image",
                    f"{name}: bbox {box.tolist()} in a {image['width']} x {image['height']} image")
        return None
    return Prompt(np.array([x, y, x + w, y + h]), int(category_id), score)


def usable_images(coco: COCO, image_dir: Path, image_ids: List[int], skipped: SkipReport) -> List[int]:
    """The ids whose files exist, are readable and have the size the annotation file gives."""
    usable = []
    for image_id in image_ids:
        record = coco.imgs[image_id]
        path = image_dir / record["file_name"]
        if not path.is_file():
            skipped.images[image_id] = f"image file {path} does not exist"
            continue
        try:
            width, height = image_size(path)
        except ValueError as error:
            skipped.images[image_id] = str(error)
            continue
        if (height, width) != (record["height"], record["width"]):
            skipped.images[image_id] = (
                f"{path} is {width} x {height} but the annotation file says {record['width']} x {record['height']}"
            )
            continue
        usable.append(image_id)
    return usable
