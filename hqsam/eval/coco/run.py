"""The whole COCO run: predictions, the table of mask AP and boundary AP per model, and the files written."""

import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import pandas as pd
from pycocotools.coco import COCO

from ...io import atomic_write
from ...modeling import HQSam
from .boundary_ap import BOUNDARY_METRICS, METRICS, as_coco, boundary_ap, coco_metrics
from .predict import CocoPredictions, journal_in, predict_coco

PathLike = Union[str, Path]
TABLE_COLUMNS = METRICS + BOUNDARY_METRICS[:3]


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
    dilation_ratio: float = 0.02,
    **options: Any,
) -> pd.DataFrame:
    """`predict_coco` (with its keyword `options`: hq_token_only, oracle, max_images, images_per_pass,
    score_threshold, progress, models, precision) then `coco_table`; with `output_dir`, also `write_coco_outputs`,
    and the predictions are journaled to `output_dir/JOURNAL` as they are made, so an interrupted run resumes."""
    predictions = predict_coco(model, image_dir, annotation_file, detections, journal=journal_in(output_dir), **options)
    table = coco_table(annotation_file, predictions, dilation_ratio)
    if output_dir is not None:
        write_coco_outputs(output_dir, predictions, table)
    return table
