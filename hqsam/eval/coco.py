"""COCO instance segmentation with a detector's boxes as prompts: mask AP and boundary AP for SAM and HQ-SAM.

The paper's protocol: every detection (image_id, category_id, xywh bbox, score, COCO's detection-results format)
is a box prompt; the mask, scored with the detection's score and labelled with its category, goes into COCO's
segmentation-results format. SAM is plain SAM's single-mask output (`forward_sam`), HQ-SAM is SAM's mask plus
the HQ mask (`hq_token_only=False`), both from one encoder pass per image; the low-resolution logits are
upsampled to the original image size as SamPredictor does and thresholded at 0. With `oracle=True` the GT boxes of
the non-crowd annotations are the prompts, each with score 1.

Mask AP is pycocotools' COCOeval ("segm"). Boundary AP follows the official Boundary IoU API (Cheng et al., CVPR
2021, `boundary_iou.coco_instance_api`): for a detection and a non-crowd GT the IoU is min(mask IoU, boundary
IoU), the boundary IoU being the IoU of the two boundary bands (`hqsam.metrics.boundary_band`, d from the image
diagonal and `dilation_ratio`); against crowd GT it is COCO's crowd mask IoU. Everything else (matching, the
S/M/L ranges on the original areas, 100 detections per image) is COCOeval's. `dilation_ratio=0.01` gives the
"strict" variant.
"""

import argparse
import contextlib
import copy
import hashlib
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from segment_anything.utils.transforms import ResizeLongestSide
from tqdm import tqdm

from ..data.coco_source import _load_coco
from ..data.sources import image_size, read_image
from ..io import atomic_write
from ..metrics import boundary_band_torch, boundary_dilation
from ..modeling import HQSam
from ..predictor import _check_boxes
from .hq_benchmark import PRECISIONS, encode_pixels

PathLike = Union[str, Path]
MODELS = ("SAM", "HQ-SAM")
JOURNAL = "predictions.jsonl"  # evaluate_coco's record of finished images in its output folder
METRICS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
BOUNDARY_METRICS = ("AP_B", "AP_B50", "AP_B75", "AP_B_S", "AP_B_M", "AP_B_L")
TABLE_COLUMNS = METRICS + BOUNDARY_METRICS[:3]
MAX_EXAMPLES = 5
# Masks upsampled to the original size at a time: postprocess_masks first goes through S x S (1024 x 1024).
_UPSAMPLE_CHUNK = 16


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


@dataclass
class CocoPredictions:
    """`results[model]`: COCO segmentation results (image_id, category_id, RLE segmentation with str counts,
    score); `image_ids`: the images evaluated, sorted; `skipped`: what was left out."""

    results: Dict[str, List[dict]]
    skipped: SkipReport
    image_ids: List[int]


@dataclass(frozen=True)
class _Prompt:
    box: np.ndarray  # x0, y0, x1, y1 in pixels, float64
    category_id: int
    score: float


# ------------------------------------------------------------------------------------------------------ prompts


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


def _detection_prompts(
    detections: List[dict], coco: COCO, selected: set, score_threshold: float, skipped: SkipReport
) -> Dict[int, List[_Prompt]]:
    prompts: Dict[int, List[_Prompt]] = {}
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


def _oracle_prompts(coco: COCO, selected: List[int], skipped: SkipReport) -> Dict[int, List[_Prompt]]:
    prompts: Dict[int, List[_Prompt]] = {}
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
            skipped: SkipReport) -> Optional[_Prompt]:
    x, y, w, h = box
    if not np.isfinite(box).all() or w <= 0 or h <= 0:
        skipped.add("invalid box", f"{name}: bbox {box.tolist()} (x, y, w, h with w, h > 0 expected)")
        return None
    if x >= image["width"] or y >= image["height"] or x + w <= 0 or y + h <= 0:
        skipped.add("box outside the image",
                    f"{name}: bbox {box.tolist()} in a {image['width']} x {image['height']} image")
        return None
    return _Prompt(np.array([x, y, x + w, y + h]), int(category_id), score)


def _usable_images(coco: COCO, image_dir: Path, image_ids: List[int], skipped: SkipReport) -> List[int]:
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


# ---------------------------------------------------------------------------------------------------- inference


@torch.no_grad()
def box_logits(
    model: HQSam,
    images: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    hq_token_only: bool = False,
    models: Sequence[str] = MODELS,
    images_per_pass: int = 4,
    precision: str = "fp32",
) -> Iterator[Dict[str, torch.Tensor]]:
    """Mask logits of SAM and/or HQ-SAM for many boxes per image, at each image's own size.

    Arguments:
      images: H_i x W_i x 3 uint8 RGB arrays.
      boxes: per image a K_i x 4 float array of x0, y0, x1, y1 boxes in pixels (clipped to the image).
      hq_token_only (bool): HQ-SAM's mask is the HQ mask alone if True, SAM's plus the HQ mask if False.
      models: which of "SAM" (plain SAM's single-mask output) and "HQ-SAM" to run.
      images_per_pass (int): images encoded together; the decoder runs once per image and model, for all of
        that image's boxes.
      precision (str): the image encoder's, "fp32" or "bf16" (see `hq_benchmark.encode_pixels`).

    Yields:
      Per image, model name -> K_i x H_i x W_i float32 logits on the model's device (mask = logits > 0).
    """
    models = _check_models(models)
    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} images but {len(boxes)} box arrays: give one K x 4 array per image")
    if images_per_pass < 1:
        raise ValueError(f"images_per_pass must be at least 1, got {images_per_pass}")
    transform = ResizeLongestSide(model.image_encoder.img_size)
    decoder, device = model.mask_decoder, model.device
    for start in range(0, len(images), images_per_pass):
        chunk = images[start : start + images_per_pass]
        inputs = [torch.as_tensor(transform.apply_image(image), device=device).permute(2, 0, 1) for image in chunk]
        embeddings, early = encode_pixels(model, torch.stack([model.preprocess(x) for x in inputs]), precision)
        hq_features = decoder.hq_features(embeddings, early) if "HQ-SAM" in models else None
        for i, image in enumerate(chunk):
            original_size = tuple(image.shape[:2])
            pixel_boxes = _check_boxes(boxes[start + i], original_size)
            if len(pixel_boxes) == 0:
                yield {name: torch.zeros((0, *original_size), device=device) for name in models}
                continue
            model_boxes = torch.as_tensor(transform.apply_boxes(pixel_boxes, original_size), dtype=torch.float,
                                          device=device)
            sparse, dense = model.prompt_encoder(points=None, boxes=model_boxes, masks=None)
            arguments = dict(image_embeddings=embeddings[i : i + 1], image_pe=model.prompt_encoder.get_dense_pe(),
                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
            low_res = {}
            if "SAM" in models:
                low_res["SAM"] = decoder.forward_sam(**arguments)[0]
            if "HQ-SAM" in models:
                low_res["HQ-SAM"] = decoder(**arguments, hq_token_only=hq_token_only,
                                            hq_features=hq_features[i : i + 1])[0]
            input_size = tuple(inputs[i].shape[-2:])
            yield {
                name: torch.cat(
                    [model.postprocess_masks(part.float(), input_size, original_size)[:, 0]
                     for part in logits.split(_UPSAMPLE_CHUNK)]
                )
                for name, logits in low_res.items()
            }


def encode_masks(masks: np.ndarray) -> List[dict]:
    """K x H x W bool masks -> K COCO RLEs ({"size": [H, W], "counts": str})."""
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def predict_coco(
    model: HQSam,
    image_dir: PathLike,
    annotation_file: PathLike,
    detections: Optional[Union[PathLike, Sequence[dict]]],
    hq_token_only: bool = False,
    oracle: bool = False,
    max_images: Optional[int] = None,
    images_per_pass: int = 4,
    score_threshold: float = 0.0,
    progress: bool = True,
    models: Sequence[str] = MODELS,
    journal: Optional[PathLike] = None,
    precision: str = "fp32",
) -> CocoPredictions:
    """Masks for every usable detection (or GT box with `oracle=True`) of the evaluated images, per model.

    The evaluated images are the annotation file's image ids, sorted, the first `max_images` of them (all if
    None), less those whose file is missing, unreadable or of another size than the file says (named in
    `skipped.images`; their detections are counted as skipped). Detections of images beyond `max_images` are
    left out on request and not counted. Detections are skipped and counted, with examples, when malformed, for
    an unknown image or category id, with w or h <= 0 or non-finite, entirely outside the image, or scored below
    `score_threshold`. Crowd annotations give no oracle prompts.

    With `journal` (a JSON Lines file), each image's results are appended there as soon as its chunk is done,
    and a rerun with the same settings, prompts and model takes them from it instead of predicting them again:
    an interrupted run resumes. A journal from other settings is replaced (with a note on stderr).
    """
    if not isinstance(model, HQSam):
        raise TypeError(f"predict_coco needs an HQSam model (hqsam.build_hqsam), got {type(model).__name__}")
    models = _check_models(models)
    if oracle == (detections is not None):
        raise ValueError("give either detections (a detector's boxes) or oracle=True (the GT boxes), not both")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be at least 1 (or None for all images), got {max_images}")
    if images_per_pass < 1:
        raise ValueError(f"images_per_pass must be at least 1, got {images_per_pass}")
    if not math.isfinite(score_threshold):
        raise ValueError(f"score_threshold must be a finite number, got {score_threshold}")
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    coco = _load_coco(Path(annotation_file))
    selected = sorted(coco.getImgIds())[:max_images]

    skipped = SkipReport()
    if oracle:
        prompts = _oracle_prompts(coco, selected, skipped)
    else:
        prompts = _detection_prompts(load_detections(detections), coco, set(selected), score_threshold, skipped)
    image_ids = _usable_images(coco, image_dir, selected, skipped)
    if not image_ids:
        first = next(iter(skipped.images.items()), None)
        raise ValueError(f"none of the {len(selected)} images can be evaluated (image {first[0]}: {first[1]})"
                         if first else f"{annotation_file} lists no images")
    for image_id, reason in skipped.images.items():
        if prompts.get(image_id):
            skipped.add("image not evaluated", f"{len(prompts[image_id])} of image {image_id}: {reason}",
                        count=len(prompts.pop(image_id)))

    prompted = [image_id for image_id in image_ids if prompts.get(image_id)]
    settings = {"models": list(models), "hq_token_only": bool(hq_token_only), "prompts": _prompts_digest(prompts),
                "model": _model_fingerprint(model), "precision": precision}
    journal = Path(journal) if journal is not None else None
    done = _read_journal(journal, settings) if journal is not None else {}
    todo = [image_id for image_id in prompted if image_id not in done]
    bar = tqdm(total=len(prompted), initial=len(prompted) - len(todo), desc="COCO masks", unit="img",
               disable=not progress, leave=False)
    for start in range(0, len(todo), images_per_pass):
        chunk = todo[start : start + images_per_pass]
        images = [read_image(image_dir / coco.imgs[image_id]["file_name"]) for image_id in chunk]
        boxes = [np.stack([prompt.box for prompt in prompts[image_id]]) for image_id in chunk]
        outputs = box_logits(model, images, boxes, hq_token_only, models, images_per_pass=len(chunk),
                             precision=precision)
        for image_id, logits in zip(chunk, outputs):
            done[image_id] = {}
            for name in models:
                rles = encode_masks((logits[name] > model.mask_threshold).cpu().numpy())
                done[image_id][name] = [
                    {"image_id": image_id, "category_id": prompt.category_id, "segmentation": rle,
                     "score": prompt.score}
                    for prompt, rle in zip(prompts[image_id], rles)
                ]
        if journal is not None:
            _append_journal(journal, [{"image_id": image_id, "results": done[image_id]} for image_id in chunk])
        bar.update(len(chunk))
    bar.close()
    results = {name: [result for image_id in prompted for result in done[image_id][name]] for name in models}
    return CocoPredictions(results=results, skipped=skipped, image_ids=image_ids)


def _prompts_digest(prompts: Dict[int, List[_Prompt]]) -> str:
    digest = hashlib.sha256()
    for image_id in sorted(prompts):
        for prompt in prompts[image_id]:
            digest.update(repr((image_id, prompt.box.tolist(), prompt.category_id, prompt.score)).encode())
    return digest.hexdigest()


def _model_fingerprint(model: HQSam) -> str:
    """A digest of a few weights that any two checkpoints differ in (SAM's patch embedding, the HQ token)."""
    digest = hashlib.sha256()
    for tensor in (model.image_encoder.patch_embed.proj.weight, model.mask_decoder.hf_token.weight):
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def _read_journal(path: Path, settings: dict) -> Dict[int, Dict[str, List[dict]]]:
    """The finished images of a journal written with `settings`; {} (and a fresh journal) otherwise.

    Line 1 holds the settings, each further line one image's results. A last line cut short by an interrupted
    write is dropped (that image is predicted again); a damaged line elsewhere is an error."""
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        found = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        found = None
    if found != {"settings": settings}:
        if lines:
            print(f"{path} was written for other settings, prompts or weights: predicting again", file=sys.stderr)
        with atomic_write(path, "w") as file:
            file.write(json.dumps({"settings": settings}) + "\n")
        return {}
    done = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path} line {number} is damaged: delete the file to predict every image again") from None
        done[int(record["image_id"])] = record["results"]
    return done


def _append_journal(path: Path, records: List[dict]) -> None:
    with open(path, "a") as file:
        file.write("".join(json.dumps(record) + "\n" for record in records))
        file.flush()
        os.fsync(file.fileno())


# ------------------------------------------------------------------------------------------------------ metrics


class BoundaryCOCOeval(COCOeval):
    """COCOeval ("segm") whose IoU against non-crowd GT is min(mask IoU, IoU of the boundary bands)."""

    def __init__(self, coco_gt: COCO, coco_dt: COCO, dilation_ratio: float) -> None:
        super().__init__(coco_gt, coco_dt, iouType="segm")
        self.dilation_ratio = dilation_ratio

    def computeIoU(self, imgId: int, catId: int):
        mask_ious = super().computeIoU(imgId, catId)
        if len(mask_ious) == 0:
            return mask_ious
        gt, dt = self._ordered(imgId, catId)  # the order COCOeval.computeIoU uses
        record = self.cocoGt.imgs[imgId]
        dilation = boundary_dilation(record["height"], record["width"], self.dilation_ratio)
        iscrowd = [int(g["iscrowd"]) for g in gt]
        band_ious = mask_utils.iou(_bands(dt, dilation), _bands(gt, dilation), iscrowd)
        ious = np.array(mask_ious, dtype=np.float64)
        regular = np.asarray(iscrowd) == 0
        ious[:, regular] = np.minimum(ious[:, regular], np.asarray(band_ious)[:, regular])
        return ious

    def _ordered(self, imgId: int, catId: int) -> Tuple[List[dict], List[dict]]:
        p = self.params
        if p.useCats:
            gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        else:
            gt = [g for c in p.catIds for g in self._gts[imgId, c]]
            dt = [d for c in p.catIds for d in self._dts[imgId, c]]
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")
        return gt, [dt[i] for i in order[: p.maxDets[-1]]]


def _bands(annotations: List[dict], dilation: int) -> List[dict]:
    """RLEs of the boundary bands of annotations whose segmentation COCOeval has turned into RLE."""
    masks = mask_utils.decode([a["segmentation"] for a in annotations])  # H x W x N uint8
    bands = boundary_band_torch(torch.from_numpy(masks.transpose(2, 0, 1).astype(bool)), dilation)
    return mask_utils.encode(np.asfortranarray(bands.numpy().transpose(1, 2, 0).astype(np.uint8)))


def _as_coco(coco_gt: Union[COCO, PathLike]) -> COCO:
    return coco_gt if isinstance(coco_gt, COCO) else _load_coco(Path(coco_gt))


def _load_results(results: Union[PathLike, Sequence[dict]]) -> List[dict]:
    if isinstance(results, (str, Path)):
        path = Path(results)
        if not path.is_file():
            raise FileNotFoundError(f"results file {path} does not exist")
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"results file {path} is not valid JSON ({error})") from None
    if not isinstance(results, (list, tuple)):
        raise ValueError(f"results must be a list of COCO results, got {type(results).__name__}")
    return list(results)


def _check_results(coco_gt: COCO, results: List[dict], iou_type: str) -> None:
    for index, result in enumerate(results):
        if not isinstance(result, dict) or not {"image_id", "category_id", "score"} <= result.keys():
            raise ValueError(f"result {index} lacks image_id, category_id or score: {str(result)[:120]}")
        image = coco_gt.imgs.get(result["image_id"])
        if image is None:
            raise ValueError(
                f"result {index} is for image_id {result['image_id']!r}, which the GT does not hold: results and "
                "annotation file do not belong together"
            )
        if iou_type == "segm":
            segmentation = result.get("segmentation")
            if not isinstance(segmentation, dict) or "counts" not in segmentation:
                raise ValueError(f"result {index} has no RLE segmentation ({{'size': [H, W], 'counts': ...}})")
            if list(segmentation.get("size", ())) != [image["height"], image["width"]]:
                raise ValueError(
                    f"result {index}: its mask is {segmentation.get('size')} (H, W) but image {result['image_id']} "
                    f"is {[image['height'], image['width']]}"
                )
        elif "bbox" not in result:
            raise ValueError(f"result {index} has no bbox")


def _run_eval(evaluator: COCOeval, image_ids: Optional[Sequence[int]], coco_gt: COCO) -> np.ndarray:
    if image_ids is not None:
        if len(image_ids) == 0:
            raise ValueError("image_ids is empty: there is no image to evaluate (None evaluates all GT images)")
        unknown = sorted(set(image_ids) - set(coco_gt.imgs))
        if unknown:
            raise ValueError(f"image_ids not in the GT: {unknown[:MAX_EXAMPLES]} ({len(unknown)} in all)")
        evaluator.params.imgIds = sorted(image_ids)
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress and the summary
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats[:6], dtype=np.float64)
    return np.where(stats < 0, np.nan, stats * 100)


def _results_coco(coco_gt: COCO, results: List[dict]) -> COCO:
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes([dict(result) for result in results])  # loadRes adds keys: copy
    empty = COCO()  # loadRes cannot take an empty list
    empty.dataset = {"images": list(coco_gt.dataset["images"]),
                     "categories": copy.deepcopy(coco_gt.dataset["categories"]), "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def coco_metrics(
    coco_gt: Union[COCO, PathLike],
    results: Union[PathLike, Sequence[dict]],
    iou_type: str = "segm",
    image_ids: Optional[Sequence[int]] = None,
) -> Dict[str, float]:
    """COCOeval's AP, AP50, AP75, AP_S, AP_M, AP_L (x100) of COCO-format results ("segm" or "bbox").

    `image_ids` restricts the evaluation to those images (all GT images if None). NaN where COCOeval gives -1
    (no GT in that area range). An empty results list scores 0.
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox' (boundary AP is boundary_ap), got {iou_type!r}")
    coco_gt, results = _as_coco(coco_gt), _load_results(results)
    _check_results(coco_gt, results, iou_type)
    evaluator = COCOeval(coco_gt, _results_coco(coco_gt, results), iouType=iou_type)
    return dict(zip(METRICS, _run_eval(evaluator, image_ids, coco_gt).tolist()))


def boundary_ap(
    coco_gt: Union[COCO, PathLike],
    results: Union[PathLike, Sequence[dict]],
    dilation_ratio: float = 0.02,
    image_ids: Optional[Sequence[int]] = None,
) -> Dict[str, float]:
    """Boundary AP (Cheng et al. 2021): AP_B, AP_B50, AP_B75, AP_B_S, AP_B_M, AP_B_L (x100) of segm results.

    As COCOeval with IoU = min(mask IoU, boundary IoU) against non-crowd GT (see the module docstring); S/M/L use
    the GT's `area`. `dilation_ratio=0.01` is the strict variant. NaN and empty results as in `coco_metrics`.
    """
    if not (math.isfinite(dilation_ratio) and dilation_ratio > 0):
        raise ValueError(f"dilation_ratio must be a finite number > 0, got {dilation_ratio!r}")
    coco_gt, results = _as_coco(coco_gt), _load_results(results)
    _check_results(coco_gt, results, "segm")
    evaluator = BoundaryCOCOeval(coco_gt, _results_coco(coco_gt, results), dilation_ratio)
    return dict(zip(BOUNDARY_METRICS, _run_eval(evaluator, image_ids, coco_gt).tolist()))


# ------------------------------------------------------------------------------------------------ the whole run


def coco_table(coco_gt: Union[COCO, PathLike], predictions: CocoPredictions,
               dilation_ratio: float = 0.02) -> pd.DataFrame:
    """Rows per model (SAM, HQ-SAM), columns AP, AP50, AP75, AP_S, AP_M, AP_L, AP_B, AP_B50, AP_B75 (x100)."""
    coco_gt = _as_coco(coco_gt)
    rows = {}
    for name, results in predictions.results.items():
        metrics = coco_metrics(coco_gt, results, "segm", predictions.image_ids)
        metrics.update(boundary_ap(coco_gt, results, dilation_ratio, predictions.image_ids))
        rows[name] = [metrics[column] for column in TABLE_COLUMNS]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(TABLE_COLUMNS))
    table.index.name = "model"
    return table


def results_file_name(model_name: str) -> str:
    """`sam_segm_results.json`, `hq-sam_segm_results.json`."""
    return f"{model_name.lower()}_segm_results.json"


def write_results(path: PathLike, results: Sequence[dict]) -> Path:
    """Write COCO-format results as JSON, atomically."""
    path = Path(path)
    with atomic_write(path, "w") as file:
        json.dump(list(results), file)
    return path


def write_coco_outputs(output_dir: PathLike, predictions: CocoPredictions, table: pd.DataFrame) -> Path:
    """`output_dir`: one results JSON per model, metrics.csv (the table) and skipped.json (the report)."""
    output_dir = Path(output_dir)
    for name, results in predictions.results.items():
        write_results(output_dir / results_file_name(name), results)
    with atomic_write(output_dir / "metrics.csv", "w") as file:
        table.to_csv(file, float_format="%.3f")
    report = {"image_ids": predictions.image_ids, "skipped": predictions.skipped.to_dict()}
    with atomic_write(output_dir / "skipped.json", "w") as file:
        json.dump(report, file, indent=1)
    return output_dir


def evaluate_coco(
    model: HQSam,
    image_dir: PathLike,
    annotation_file: PathLike,
    detections: Optional[Union[PathLike, Sequence[dict]]],
    output_dir: Optional[PathLike] = None,
    hq_token_only: bool = False,
    oracle: bool = False,
    max_images: Optional[int] = None,
    images_per_pass: int = 4,
    score_threshold: float = 0.0,
    dilation_ratio: float = 0.02,
    progress: bool = True,
    precision: str = "fp32",
) -> pd.DataFrame:
    """`predict_coco` then `coco_table` for SAM and HQ-SAM; with `output_dir`, also `write_coco_outputs`, and the
    predictions are journaled to `output_dir/JOURNAL` as they are made, so an interrupted run resumes."""
    predictions = predict_coco(model, image_dir, annotation_file, detections, hq_token_only=hq_token_only,
                               oracle=oracle, max_images=max_images, images_per_pass=images_per_pass,
                               score_threshold=score_threshold, progress=progress,
                               journal=_journal_in(output_dir), precision=precision)
    table = coco_table(annotation_file, predictions, dilation_ratio)
    if output_dir is not None:
        write_coco_outputs(output_dir, predictions, table)
    return table


def _journal_in(output_dir: Optional[PathLike]) -> Optional[Path]:
    """The prediction journal in an output folder (made if missing); None without an output folder."""
    if output_dir is None:
        return None
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return Path(output_dir) / JOURNAL


def _check_models(models: Sequence[str]) -> Tuple[str, ...]:
    models = tuple(models)
    if not models or any(name not in MODELS for name in models) or len(set(models)) != len(models):
        raise ValueError(f"models must be distinct names among {MODELS}, got {models}")
    return models


# --------------------------------------------------------------------------------------------- command line


def add_coco_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of `hqsam eval coco` to `parser` and set its `func` to `run_coco_command`."""
    parser.add_argument("--checkpoint", help="HQ-SAM checkpoint (sam_hq_vit_*.pth); none: random weights")
    parser.add_argument("--model-type", default="auto", help="vit_b, vit_l, vit_h, toy or auto (default: auto)")
    parser.add_argument("--images", required=True, help="image folder, e.g. coco/val2017")
    parser.add_argument("--annotations", required=True, help="instances file, e.g. instances_val2017.json")
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--detections", help="detector boxes in COCO's detection-results JSON format")
    prompts.add_argument("--oracle", action="store_true", help="prompt with the GT boxes instead")
    parser.add_argument("--output", help="folder for the results JSONs, metrics.csv and skipped.json")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N image ids")
    parser.add_argument("--images-per-pass", type=int, default=4, help="images encoded together (default: 4)")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="drop detections scored below this")
    parser.add_argument("--hq-token-only", action="store_true", help="HQ mask alone (paper's COCO: off)")
    parser.add_argument("--dilation-ratio", type=float, default=0.02, help="boundary AP band (0.01: strict)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="the image encoder's (default: fp32)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda[:N]")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run_coco_command)
    return parser


def run_coco_command(args: argparse.Namespace) -> int:
    """Run `hqsam eval coco` from parsed `add_coco_arguments` arguments; prints the table, returns 0 or 1."""
    from ..build import build_hqsam
    from ..checkpoint import CheckpointError
    from ..profiles import resolve_device

    try:
        if args.checkpoint is None:
            if args.model_type == "auto":
                raise ValueError("--model-type auto reads the type from --checkpoint: give one, or a model type")
            print(f"warning: no --checkpoint, {args.model_type} has random weights", file=sys.stderr)
        model = build_hqsam(args.model_type, args.checkpoint).to(resolve_device(args.device))
        predictions = predict_coco(
            model, args.images, args.annotations, None if args.oracle else args.detections,
            hq_token_only=args.hq_token_only, oracle=args.oracle, max_images=args.max_images,
            images_per_pass=args.images_per_pass, score_threshold=args.score_threshold, progress=args.progress,
            journal=_journal_in(args.output), precision=args.precision,
        )
        table = coco_table(args.annotations, predictions, args.dilation_ratio)
        if args.output is not None:
            write_coco_outputs(args.output, predictions, table)
    except (ValueError, FileNotFoundError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if predictions.skipped.total or predictions.skipped.images:
        print(predictions.skipped, file=sys.stderr)
    print(f"{len(predictions.image_ids)} images")
    print(table.round(1).to_string())
    return 0
