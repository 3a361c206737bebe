"""COCO mask AP (pycocotools' COCOeval, "segm") and boundary AP (the official Boundary IoU API's rule)."""

import contextlib
import copy
import io
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ...data.coco_source import _load_coco
from ...metrics import boundary_band_torch, boundary_dilation
from .prompts import MAX_EXAMPLES

PathLike = Union[str, Path]
METRICS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
BOUNDARY_METRICS = ("AP_B", "AP_B50", "AP_B75", "AP_B_S", "AP_B_M", "AP_B_L")


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


def as_coco(coco_gt: Union[COCO, PathLike]) -> COCO:
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
    coco_gt, results = as_coco(coco_gt), _load_results(results)
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
    coco_gt, results = as_coco(coco_gt), _load_results(results)
    _check_results(coco_gt, results, "segm")
    evaluator = BoundaryCOCOeval(coco_gt, _results_coco(coco_gt, results), dilation_ratio)
    return dict(zip(BOUNDARY_METRICS, _run_eval(evaluator, image_ids, coco_gt).tolist()))
