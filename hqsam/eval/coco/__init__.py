"""COCO instance segmentation with a detector's boxes as prompts: mask AP and boundary AP for SAM and HQ-SAM.

The paper's protocol: every detection (image_id, category_id, xywh bbox, score, COCO's detection-results format)
is a box prompt; the mask, scored with the detection's score and labelled with its category, goes into COCO's
segmentation-results format. SAM is plain SAM's single-mask output, HQ-SAM is SAM's mask plus
the HQ mask (`hq_token_only=False`), both from one encoder pass per image; the low-resolution logits are
upsampled to the original image size as SamPredictor does and thresholded at 0. With `oracle=True` the GT boxes of
the non-crowd annotations are the prompts, each with score 1.

Mask AP is pycocotools' COCOeval ("segm"). Boundary AP follows the official Boundary IoU API (Cheng et al., CVPR
2021, `boundary_iou.coco_instance_api`): for a detection and a non-crowd GT the IoU is min(mask IoU, boundary
IoU), the boundary IoU being the IoU of the two boundary bands (`hqsam.metrics.boundary_band`, d from the image
diagonal and `dilation_ratio`); against crowd GT it is COCO's crowd mask IoU. Everything else (matching, the
S/M/L ranges on the original areas, 100 detections per image) is COCOeval's. `dilation_ratio=0.01` gives the
"strict" variant.

The package: `prompts` (detections or GT boxes, checked, with the skip report), `predict` (masks per model through
`hqsam.decoding.box_logits`, with the resumable journal), `boundary_ap` (COCOeval and boundary AP), `run` (the
table and the files of a whole evaluation). `hqsam eval coco` is in `hqsam.cli.eval`.
"""

from .boundary_ap import BOUNDARY_METRICS, METRICS, BoundaryCOCOeval, boundary_ap, coco_metrics
from .predict import JOURNAL, CocoPredictions, encode_masks, predict_coco
from .prompts import SkipReport, load_detections
from .run import TABLE_COLUMNS, coco_table, evaluate_coco, results_file_name, write_coco_outputs, write_results

__all__ = [
    "BOUNDARY_METRICS", "JOURNAL", "METRICS", "TABLE_COLUMNS", "BoundaryCOCOeval", "CocoPredictions", "SkipReport",
    "boundary_ap", "coco_metrics", "coco_table", "encode_masks", "evaluate_coco", "load_detections", "predict_coco",
    "results_file_name", "write_coco_outputs", "write_results",
]
