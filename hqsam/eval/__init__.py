"""The paper's evaluation protocols: the four HQ datasets, COCO (mask AP, boundary AP), box noise, points, speed."""

from .coco import boundary_ap, coco_metrics, evaluate_coco, predict_coco
from .hq_benchmark import evaluate_hq_datasets, summarize
from .robustness import evaluate_box_noise, evaluate_points, noisy_boxes
from .speed import measure_speed

__all__ = [
    "boundary_ap", "coco_metrics", "evaluate_box_noise", "evaluate_coco", "evaluate_hq_datasets", "evaluate_points",
    "measure_speed", "noisy_boxes", "predict_coco", "summarize",
]
