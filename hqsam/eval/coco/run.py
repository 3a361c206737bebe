"""The whole COCO run: predictions, the table of mask AP and boundary AP per model, and the files written."""

import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import pandas as pd
from pycocotools.coco import COCO

from ... import provenance
from ...decoding import MODELS
from ...io import atomic_write
from ...modeling import HQSam
from .boundary_ap import BOUNDARY_METRICS, METRICS, as_coco, boundary_ap, coco_metrics
from .predict import JOURNAL, CocoPredictions, journal_in, predict_coco

PathLike = Union[str, Path]
TABLE_COLUMNS = METRICS + BOUNDARY_METRICS[:3]
COCO_DEFAULTS = {"hq_token_only": False, "oracle": False, "max_images": None, "images_per_pass": 4,
                 "score_threshold": 0.0, "models": list(MODELS), "precision": "fp32"}  # predict_coco's


def coco_table(coco_gt: Union[COCO, PathLike], predictions: CocoPredictions,
               dilation_ratio: float = 0.02) -> pd.DataFrame:
    """Rows per model (SAM, HQ-SAM), columns AP, AP50, AP75, AP_S, AP_M, AP_L, AP_B, AP_B50, AP_B75 (x100)."""
    coco_gt = as_coco(coco_gt)
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


COCO_FILES = (JOURNAL, "metrics.csv", "skipped.json", *(results_file_name(name) for name in MODELS))  # an output folder's


def write_results(path: PathLike, results: Sequence[dict]) -> Path:
    """Write COCO-format results as JSON, atomically."""
    path = Path(path)
    with atomic_write(path, "w") as file:
        json.dump(list(results), file)
    return path


def coco_provenance(model: HQSam, annotation_file: PathLike, detections: Optional[Union[PathLike, Sequence[dict]]],
                    dilation_ratio: float = 0.02, **options: Any) -> dict:
    """What makes a COCO evaluation (`hqsam.provenance`): the weights, the annotation file's SHA-256, the prompts
    (the detections file's SHA-256, a digest of the given detections, or "oracle"), and `predict_coco`'s options
    (its defaults filled in)."""
    settings = {**COCO_DEFAULTS, **{k: v for k, v in options.items() if k != "progress"}}
    if detections is None:
        prompts = "oracle"
    elif isinstance(detections, (str, Path)):
        prompts = provenance.file_sha256(detections)
    else:
        prompts = provenance.digest(list(detections))
    scope = {"model": provenance.model_identity(model),
             "coco_data": {"annotations": provenance.file_sha256(annotation_file)},
             "precision": settings.pop("precision"), "device": next(model.parameters()).device.type,
             "max_images": settings.pop("max_images")}
    return provenance.describe("coco", scope, {**settings, "prompts": prompts, "dilation_ratio": dilation_ratio},
                               __name__)


def write_coco_outputs(output_dir: PathLike, predictions: CocoPredictions, table: pd.DataFrame,
                       made: dict) -> Path:
    """`output_dir`: one results JSON per model, metrics.csv (the table), skipped.json (the report) and
    provenance.json (`made`, from `coco_provenance`)."""
    output_dir = Path(output_dir)
    for name, results in predictions.results.items():
        write_results(output_dir / results_file_name(name), results)
    with atomic_write(output_dir / "metrics.csv", "w") as file:
        table.to_csv(file, float_format="%.3f")
    report = {"image_ids": predictions.image_ids, "skipped": predictions.skipped.to_dict()}
    with atomic_write(output_dir / "skipped.json", "w") as file:
        json.dump(report, file, indent=1)
    provenance.write_provenance(output_dir, made)
    return output_dir


def evaluate_coco(
    model: HQSam,
    image_dir: PathLike,
    annotation_file: PathLike,
    detections: Optional[Union[PathLike, Sequence[dict]]],
    output_dir: Optional[PathLike] = None,
    dilation_ratio: float = 0.02,
    **options: Any,
) -> pd.DataFrame:
    """`predict_coco` (with its keyword `options`: hq_token_only, oracle, max_images, images_per_pass,
    score_threshold, progress, models, precision) then `coco_table`, its provenance in `table.attrs["provenance"]`;
    with `output_dir`, also `write_coco_outputs`,
    and the predictions are journaled to `output_dir/JOURNAL` as they are made, so an interrupted run resumes."""
    made = coco_provenance(model, annotation_file, detections, dilation_ratio, **options)
    if output_dir is not None:
        provenance.write_provenance(journal_in(output_dir).parent, made)  # first: it vouches for the journal too
    predictions = predict_coco(model, image_dir, annotation_file, detections, journal=journal_in(output_dir), **options)
    table = coco_table(annotation_file, predictions, dilation_ratio)
    table.attrs["provenance"] = made
    if output_dir is not None:
        write_coco_outputs(output_dir, predictions, table, made)
    return table
