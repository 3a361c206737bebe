"""What a profile is: the one place that says where each profile keeps its inputs and outputs, and which device
"auto" means.

`paper` is the published setting: the released SAM and HQ-SAM checkpoints of a backbone (ViT-L, as in the
paper's tables, unless another is asked for; Light HQ-SAM's vit_tiny has MobileSAM's as its SAM), HQSeg-44K
extracted in the release's tree, COCO val2017 with a detector's boxes. `toy` is the CPU miniature: the toy world,
the toy SAM released with the package (TOY_SAM, `hqsam.toy.release`), and its HQ-SAM trained by the toy run.
Everything else (the training configs, `hqsam eval`, the notebooks, `make reproduce`, `hqsam download-data`) asks
this module instead of spelling paths out.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from .download import REGISTRY

PROFILES = ("toy", "paper")
PAPER_BACKBONES = ("vit_b", "vit_l", "vit_h", "vit_tiny")
QUICK_DIR = ".quick"  # quick (CI) runs keep their files apart, so they never stand in for full ones
TOY_SAM = Path(__file__).resolve().parent / "toy" / "sam_toy.pth"  # shipped, read-only: hqsam.toy.release

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Profile:
    """A profile's settings; every path is under the root it was made for, but the toy profile's SAM (TOY_SAM)."""

    name: str
    model_type: str  # the backbone: "toy", or one of PAPER_BACKBONES
    layout: str  # the dataset layout (hqsam.data.layout.LAYOUTS)
    data_root: Path  # the toy world, or HQSeg-44K extracted
    checkpoints: Path  # downloaded checkpoints (the toy's SAM is shipped, its HQ-SAM trained)
    downloads: Path  # downloaded archives (the toy downloads none; its folder is its own all the same)
    sam_checkpoint: Path  # the frozen SAM that HQ-SAM trains on
    hq_checkpoint: Path  # the HQ-SAM evaluated: the toy run's export, or the released checkpoint
    train_dir: Path  # training outputs
    results: Path  # machine-readable results (CSV, tables)
    figures: Path  # PNG and PDF
    notebooks: Path  # the notebooks as `make reproduce` executed them
    coco_root: Path  # COCO-format evaluation data: images, instances, detections
    coco_images: Path
    coco_annotations: Path
    coco_detections: Path  # a detector's boxes in COCO's results format

    @property
    def runs(self) -> Path:
        """The profile's runs folder (runs/<profile>): training runs, executed notebooks, evaluations of their own."""
        return self.train_dir.parent

    @property
    def checkpoint_names(self) -> tuple:
        """Registry names (hqsam.download.REGISTRY) of the checkpoints to download; none for the toy."""
        return () if self.name == "toy" else (sam_checkpoint_name(self.model_type), f"sam_hq_{self.model_type}")


def sam_checkpoint_name(model_type: str) -> str:
    """The registry name of the SAM that HQ-SAM of a paper backbone trains on: Meta's `sam_<backbone>`, or
    MobileSAM's `mobile_sam` (TinyViT) for Light HQ-SAM."""
    return "mobile_sam" if model_type == "vit_tiny" else f"sam_{model_type}"


def get_profile(
    name: str, root: PathLike = ".", quick: bool = False, model_type: Optional[str] = None
) -> Profile:
    """The profile `name` with its files under `root` (quick runs under ROOT/.quick); `model_type` picks the
    paper profile's backbone (default vit_l)."""
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {name!r} (papermill: -p profile toy)")
    root = Path(root) / QUICK_DIR if quick else Path(root)
    if name == "toy":
        if model_type not in (None, "toy"):
            raise ValueError(
                f"the toy profile has the toy backbone only, got model_type={model_type!r}; the ViT backbones are "
                "the paper profile's (profile: paper)"
            )
        coco, runs = root / "data/toy/toy_coco", root / "runs/toy"
        return Profile(
            "toy", "toy", "toy", root / "data/toy", runs / "checkpoints", runs / "downloads",
            TOY_SAM, runs / "train/sam_hq_toy.pth", runs / "train",
            root / "results/toy", root / "figures/toy", runs / "notebooks",
            coco, coco / "images", coco / "instances.json", coco / "detections.json",
        )
    model_type = model_type or "vit_l"
    if model_type not in PAPER_BACKBONES:
        raise ValueError(f"the paper profile's backbone must be one of {PAPER_BACKBONES}, got {model_type!r}")
    checkpoints, coco = root / "checkpoints", root / "data/coco"
    return Profile(
        "paper", model_type, "hqseg44k", root / "data/hqseg44k", checkpoints, root / "data/downloads",
        checkpoints / REGISTRY[sam_checkpoint_name(model_type)].filename,
        checkpoints / REGISTRY[f"sam_hq_{model_type}"].filename,
        root / "runs/paper/train", root / "results/paper", root / "figures/paper", root / "runs/paper/notebooks",
        coco, coco / "val2017", coco / "annotations/instances_val2017.json", coco / "focalnet_dino_val2017.json",
    )


def resolve_device(device: str = "auto") -> str:
    """"auto" is cuda when a GPU is visible, else cpu; "cpu" and "cuda[:N]" are checked against what is there."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is visible: use device='cpu' or 'auto'")
    return device
