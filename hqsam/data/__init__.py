"""Datasets: HQSeg-44K and users' folders read by one reader with a validation report, COCO instances."""

from .coco_source import CocoInstanceSource
from .layout import HQSEG44K_LAYOUT, LAYOUTS, TOY_LAYOUT, SourceSpec
from .sources import FolderSource, Sample, SourceReport, read_image, read_layout, read_mask, validation_report

__all__ = [
    "HQSEG44K_LAYOUT", "LAYOUTS", "TOY_LAYOUT", "CocoInstanceSource", "FolderSource", "Sample", "SourceReport",
    "SourceSpec", "read_image", "read_layout", "read_mask", "validation_report",
]
