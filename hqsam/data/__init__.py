"""Datasets: HQSeg-44K and users' folders read by one reader with a validation report, COCO instances, the toy world."""

from .coco_source import CocoInstanceSource
from .layout import HQSEG44K_LAYOUT, LAYOUTS, TOY_LAYOUT, SourceSpec
from .sources import FolderSource, Sample, SourceReport, read_image, read_layout, read_mask, validation_report
from .toy_world import generate_toy_coco, generate_toy_scenes, generate_toy_world, read_toy_scenes

__all__ = [
    "HQSEG44K_LAYOUT", "LAYOUTS", "TOY_LAYOUT", "CocoInstanceSource", "FolderSource", "Sample", "SourceReport",
    "SourceSpec", "generate_toy_coco", "generate_toy_scenes", "generate_toy_world", "read_image", "read_layout", "read_mask",
    "read_toy_scenes", "validation_report",
]
