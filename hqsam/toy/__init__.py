"""The toy world and the toy SAM: the CPU stand-ins for HQSeg-44K, COCO and a released SAM (the `toy` profile).

`shapes` draws the objects' masks, `paint` the images around them, `world` writes the datasets (the HQ layout,
a COCO-format set, training scenes), `sam` trains the toy SAM on them, `release` makes and checks the toy SAM the
package ships.
"""

from .paint import draw_toy_object
from .release import prepare_toy, released_toy_sam
from .sam import loss_log_path, train_toy_sam
from .shapes import CHARACTERS, COCO_CATEGORIES, draw_toy_mask
from .world import (
    COCO_DIR, SCENES_DIR, TOY_DIR, generate_toy_coco, generate_toy_scenes, generate_toy_world, read_toy_scenes,
)

__all__ = [
    "CHARACTERS", "COCO_CATEGORIES", "COCO_DIR", "SCENES_DIR", "TOY_DIR", "draw_toy_mask", "draw_toy_object",
    "generate_toy_coco", "generate_toy_scenes", "generate_toy_world", "loss_log_path", "prepare_toy",
    "read_toy_scenes", "released_toy_sam", "train_toy_sam",
]
