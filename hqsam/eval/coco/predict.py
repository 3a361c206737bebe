"""COCO masks for every prompt of the evaluated images, per model, journaled so that an interrupted run resumes."""

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ...data.coco_source import _load_coco
from ...data.sources import read_image
from ...decoding import MODELS, box_logits, check_models
from ...io import atomic_write
from ...modeling import DEFAULT_VARIANT, HQSam
from .prompts import Prompt, SkipReport, detection_prompts, load_detections, oracle_prompts, usable_images

PathLike = Union[str, Path]
JOURNAL = "predictions.jsonl"  # evaluate_coco's record of finished images in its output folder


@dataclass
class CocoPredictions:
    """`results[model]`: COCO segmentation results (image_id, category_id, RLE segmentation with str counts,
    score); `image_ids`: the images evaluated, sorted; `skipped`: what was left out."""

    results: Dict[str, List[dict]]
    skipped: SkipReport
    image_ids: List[int]


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
    models = check_models(models)
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
        prompts = oracle_prompts(coco, selected, skipped)
    else:
        prompts = detection_prompts(load_detections(detections), coco, set(selected), score_threshold, skipped)
    image_ids = usable_images(coco, image_dir, selected, skipped)
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
        outputs = box_logits(model, images, boxes, models, hq_token_only, images_per_pass=len(chunk),
                             precision=precision)
        for image_id, output in zip(chunk, outputs):
            done[image_id] = {}
            for name in models:
                rles = encode_masks((output.upsampled(model, name)[:, 0] > model.mask_threshold).cpu().numpy())
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


def _prompts_digest(prompts: Dict[int, List[Prompt]]) -> str:
    digest = hashlib.sha256()
    for image_id in sorted(prompts):
        for prompt in prompts[image_id]:
            digest.update(repr((image_id, prompt.box.tolist(), prompt.category_id, prompt.score)).encode())
    return digest.hexdigest()


def _model_fingerprint(model: HQSam) -> str:
    """A digest of a few weights that any two checkpoints differ in (SAM's patch embedding's first weights: a ViT's
    or TinyViT's, the HQ token, a fine-tuning baseline's mask tokens) and of the variant of one of the paper's
    ablations."""
    decoder, digest = model.mask_decoder, hashlib.sha256()
    tensors = [next(model.image_encoder.patch_embed.parameters()), decoder.hf_token.weight]
    if decoder.finetuned is not None:
        tensors.append(decoder.finetuned.mask_tokens.weight)
    for tensor in tensors:
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    if decoder.variant != DEFAULT_VARIANT:
        digest.update(decoder.variant.encode())
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


def journal_in(output_dir: Optional[PathLike]) -> Optional[Path]:
    """The prediction journal in an output folder (made if missing); None without an output folder."""
    if output_dir is None:
        return None
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return Path(output_dir) / JOURNAL
