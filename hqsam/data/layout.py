"""Where each source of a dataset lives: HQSeg-44K as released, and the toy world written in the same shape.

Paths are relative to the dataset root (the folder the archives are extracted into, or the toy world's root).
Images and masks are paired by file stem. An evaluation set names its counterpart in the paper's tables
(`paper_name`): HQSeg-44K's are their own, the toy world's are the HQ sets they stand for.
"""

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class SourceSpec:
    split: str  # "train" or "val"
    name: str
    image_dir: str
    mask_dir: str
    image_ext: str = ".jpg"
    mask_ext: str = ".png"
    expected: Optional[int] = None  # image count of the released source; None where there is no fixed count
    paper_name: Optional[str] = None  # the paper's evaluation set this one is or stands for; None: not in its tables


Layout = Tuple[SourceSpec, ...]

# ../shared/paper/tables/hqseg44k_sources.csv, the folders of the released archives.
HQSEG44K_LAYOUT: Layout = (
    SourceSpec("train", "DIS5K-TR", "DIS5K/DIS-TR/im", "DIS5K/DIS-TR/gt", expected=3000),
    SourceSpec(
        "train", "ThinObject5K-TR", "thin_object_detection/ThinObject5K/images_train",
        "thin_object_detection/ThinObject5K/masks_train", expected=4748,
    ),
    SourceSpec("train", "FSS-1000", "cascade_psp/fss_all", "cascade_psp/fss_all", expected=10000),
    SourceSpec("train", "DUTS-TR", "cascade_psp/DUTS-TR", "cascade_psp/DUTS-TR", expected=10553),
    SourceSpec("train", "DUTS-TE", "cascade_psp/DUTS-TE", "cascade_psp/DUTS-TE", expected=5019),
    SourceSpec("train", "ECSSD", "cascade_psp/ecssd", "cascade_psp/ecssd", expected=1000),
    SourceSpec("train", "MSRA-10K", "cascade_psp/MSRA_10K", "cascade_psp/MSRA_10K", expected=10000),
    SourceSpec("val", "DIS5K-VD", "DIS5K/DIS-VD/im", "DIS5K/DIS-VD/gt", expected=470, paper_name="DIS5K-VD"),
    SourceSpec(
        "val", "COIFT", "thin_object_detection/COIFT/images", "thin_object_detection/COIFT/masks", expected=280,
        paper_name="COIFT",
    ),
    SourceSpec(
        "val", "HRSOD", "thin_object_detection/HRSOD/images", "thin_object_detection/HRSOD/masks_max255",
        expected=287, paper_name="HRSOD",
    ),
    SourceSpec(
        "val", "ThinObject5K-TE", "thin_object_detection/ThinObject5K/images_test",
        "thin_object_detection/ThinObject5K/masks_test", expected=500, paper_name="ThinObject5K-TE",
    ),
)

# The toy world (hqsam.toy.world): one training source and four validation sets of different character,
# mirroring the four HQ sets. Counts depend on the generator's arguments, so none is fixed here.
TOY_LAYOUT: Layout = (
    SourceSpec("train", "Toy-TR", "toy/train/im", "toy/train/gt"),
    SourceSpec("val", "Toy-DIS", "toy/dis/im", "toy/dis/gt", paper_name="DIS5K-VD"),
    SourceSpec("val", "Toy-COIFT", "toy/coift/im", "toy/coift/gt", paper_name="COIFT"),
    SourceSpec("val", "Toy-HRSOD", "toy/hrsod/im", "toy/hrsod/gt", paper_name="HRSOD"),
    SourceSpec("val", "Toy-Thin", "toy/thin/im", "toy/thin/gt", paper_name="ThinObject5K-TE"),
)

LAYOUTS = {"hqseg44k": HQSEG44K_LAYOUT, "toy": TOY_LAYOUT}
