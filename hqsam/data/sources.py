"""Folders of images and masks paired by file stem, read as (RGB image, boolean mask) samples, with a report.

Mask conventions. HQSeg-44K stores masks as 0/255 grayscale PNGs and the protocol binarises them at > 128.
Users' data often stores 0/1 instead, which a fixed > 128 threshold turns into empty masks (and near-zero IoU)
without any error. `read_mask` therefore looks at the values: a mask whose maximum is 1 is 0/1 and binarised at
> 0; any other mask is 0/255 (anti-aliased values included) and binarised at > 128. RGB, RGBA, palette and
1-bit masks are converted to 8-bit grayscale ("L") first. A FolderSource sample also keeps that grayscale on the
same scale, as `soft` in [0, 1] (the release trains against it).

Validation cost. HQSeg-44K has 44K pairs, and its DIS5K images are up to about 24 megapixels. Validation
decodes every mask (needed to find empty masks and the convention) but only the header of every image (format,
width and height), which catches missing, empty, garbage and non-image files and image/mask size mismatches
for a fraction of the cost of decoding. An image whose header is fine but whose pixel data is truncated passes
validation and raises a ValueError naming the file when the sample is read.
"""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..seeding import keyed_seed
from .layout import HQSEG44K_LAYOUT, Layout, SourceSpec

PathLike = Union[str, Path]

VALIDATION_WORKERS = 8  # PIL decodes with the GIL released, so threads overlap mask decoding
SHOWN_NAMES = 5


@dataclass
class Sample:
    """One training or evaluation pair: `image` H x W x 3 uint8 RGB, `mask` H x W bool, `name` "source/stem".

    `soft` is the GT before binarisation, H x W float32 in [0, 1] (a 0/255 mask / 255, a 0/1 mask as it is), for
    training against the soft GT as the release does; None where the source has no grayscale (COCO polygons).
    """

    image: np.ndarray
    mask: np.ndarray
    name: str
    soft: Optional[np.ndarray] = None


@dataclass
class SourceReport:
    """What a source held, what it pairs, and what it left out and why.

    `paired` counts image/mask pairs (FolderSource) or annotations whose image file exists (CocoInstanceSource);
    `usable` those that became samples. The lists name what was left out: `unpaired_images` / `unpaired_masks`
    (stems with one side only; for COCO, images without annotations / annotation ids whose image file is
    missing), `unreadable` ((file, reason)), `empty_masks` (stems or annotation ids whose binarised mask has no
    foreground, or too little for COCO's `min_area`), `excluded` ((item, rule), e.g. COCO crowd annotations).
    `conventions` counts the mask conventions found ("0/255", "0/1", "empty"); empty without validation.
    `other_split` names the pairs a `holdout` (FolderSource) gave to the other split: held out for validation
    from a training source, left to training by its validation part.
    """

    split: str
    name: str
    expected: Optional[int]
    found_images: int
    found_masks: int
    paired: int
    usable: int
    unpaired_images: List[str] = field(default_factory=list)
    unpaired_masks: List[str] = field(default_factory=list)
    unreadable: List[Tuple[str, str]] = field(default_factory=list)
    empty_masks: List[str] = field(default_factory=list)
    excluded: List[Tuple[str, str]] = field(default_factory=list)
    conventions: Dict[str, int] = field(default_factory=dict)
    validated: bool = True
    holdout: float = 0.0
    other_split: List[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Pairs left out because a file was unreadable or a mask empty."""
        return self.paired - len(self.other_split) - self.usable

    @property
    def expected_ok(self) -> Optional[bool]:
        """Whether as many images were found as the released source holds; None where no count is fixed."""
        return None if self.expected is None else self.found_images == self.expected

    def row(self) -> Dict[str, object]:
        """Scalar columns for one row of `validation_report`."""
        return {
            "split": self.split,
            "name": self.name,
            "expected": self.expected,
            "found_images": self.found_images,
            "found_masks": self.found_masks,
            "paired": self.paired,
            "usable": self.usable,
            "skipped": self.skipped,
            "expected_ok": self.expected_ok,
            "unpaired_images": len(self.unpaired_images),
            "unpaired_masks": len(self.unpaired_masks),
            "unreadable": len(self.unreadable),
            "empty_masks": len(self.empty_masks),
            "excluded": len(self.excluded),
            "other_split": len(self.other_split),
            "conventions": ", ".join(f"{name} {count}" for name, count in sorted(self.conventions.items())),
            "validated": self.validated,
        }

    def __str__(self) -> str:
        expected = "" if self.expected is None else f" of {self.expected} expected"
        parts = [
            f"{self.split}/{self.name}: {self.found_images} images{expected} and {self.found_masks} masks found, "
            f"{self.paired} paired, {self.usable} usable"
            + ("" if self.validated else " (not validated)")
        ]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        for label, items in (
            ("unreadable", [f"{Path(file).name} ({reason})" for file, reason in self.unreadable]),
            ("empty masks", self.empty_masks),
            ("excluded", [f"{item} ({rule})" for item, rule in self.excluded]),
            ("images without a mask", self.unpaired_images),
            ("masks without an image", self.unpaired_masks),
            (f"{'left to training' if self.split == 'val' else 'held out for validation'} (holdout {self.holdout})",
             self.other_split),
        ):
            if items:
                parts.append(f"{label}: {_first_names(items)}")
        if self.conventions:
            parts.append("mask conventions: " + ", ".join(f"{n} {c}" for n, c in sorted(self.conventions.items())))
        if self.expected_ok is False:
            parts.append(f"WARNING: expected {self.expected} images, found {self.found_images}")
        return "; ".join(parts) + "."


def _first_names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN_NAMES])
    return f"{len(items)} ({shown}{', ...' if len(items) > SHOWN_NAMES else ''})"


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB (grayscale repeated, alpha dropped); ValueError if unreadable."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def binarize_mask(gray: np.ndarray) -> Tuple[np.ndarray, str]:
    """H x W uint8 grayscale -> (H x W bool, convention): max 1 is "0/1" (> 0), else "0/255" (> 128).

    The convention is "empty" when the result has no foreground.
    """
    if gray.size and gray.max() == 1:
        mask, convention = gray > 0, "0/1"
    else:
        mask, convention = gray > 128, "0/255"
    return mask, (convention if mask.any() else "empty")


def read_gray_mask(path: PathLike) -> np.ndarray:
    """Read a mask file as H x W uint8 grayscale, not binarised; ValueError if unreadable."""
    try:
        with Image.open(path) as image:
            return np.asarray(image if image.mode == "L" else image.convert("L"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read mask {path}: {error}") from error


def read_mask(path: PathLike) -> Tuple[np.ndarray, str]:
    """Read a mask file as (H x W bool, convention "0/255" | "0/1" | "empty"); ValueError if unreadable."""
    return binarize_mask(read_gray_mask(path))


def image_size(path: PathLike) -> Tuple[int, int]:
    """(width, height) from an image file's header, without decoding its pixels; ValueError if unreadable."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def _reason(error: ValueError, path: Path) -> str:
    """The underlying error of a failed read, without the file's full path (the report names the file)."""
    cause = error.__cause__
    text = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
    return text.replace(str(path), path.name)


def _files_by_stem(directory: Path, ext: str) -> Dict[str, Path]:
    """Files of `directory` whose name ends with `ext` (exact case), by stem."""
    return {
        entry.name[: -len(ext)]: Path(entry.path)
        for entry in os.scandir(directory)
        if entry.name.endswith(ext) and len(entry.name) > len(ext) and entry.is_file()
    }


def _check_pair(image_path: Path, mask_path: Path) -> Tuple[str, Optional[Tuple[str, str]]]:
    """Convention of a pair's mask, or ("unreadable", (file, reason))."""
    try:
        width, height = image_size(image_path)
    except ValueError as error:
        return "unreadable", (str(image_path), _reason(error, image_path))
    try:
        mask, convention = read_mask(mask_path)
    except ValueError as error:
        return "unreadable", (str(mask_path), _reason(error, mask_path))
    if mask.shape != (height, width):
        reason = f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {width}x{height}"
        return "unreadable", (str(mask_path), reason)
    return convention, None


def held_out_stems(stems: Sequence[str], holdout: float) -> List[str]:
    """The round(holdout x len(stems)) stems, at least one if holdout > 0, whose keyed hash ("holdout", stem) is
    smallest, sorted: a choice made by the stems alone, whatever the listing order, machine or seed."""
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout!r}: e.g. holdout: 0.1")
    count = max(1, round(holdout * len(stems))) if holdout and stems else 0
    if count and count >= len(stems):
        raise ValueError(f"holdout {holdout} of {len(stems)} pairs leaves none to train on: lower holdout or add data")
    return sorted(sorted(stems, key=lambda stem: keyed_seed("holdout", stem))[:count])


class FolderSource:
    """Images and masks paired by file stem, one sample per pair, in sorted stem order.

    `image_dir` and `mask_dir` may be the same folder (the extensions tell images from masks). With
    `validate=True`, every pair is checked once here (see the module docstring) and pairs whose image or mask is
    unreadable, whose sizes differ, or whose mask is empty are left out of the samples and named in `report`.
    With `validate=False` nothing is read until a sample is requested, and every pair is a sample.

    `holdout` (0 <= holdout < 1) splits the pairs by stem (`held_out_stems`) before validation: with split "val"
    the source holds the held-out pairs, with any other split the rest; `report.other_split` names the others.
    """

    def __init__(
        self,
        name: str,
        image_dir: PathLike,
        mask_dir: PathLike,
        image_ext: str = ".jpg",
        mask_ext: str = ".png",
        expected: Optional[int] = None,
        split: str = "train",
        validate: bool = True,
        workers: int = VALIDATION_WORKERS,
        holdout: float = 0.0,
    ) -> None:
        self.name = name
        self.split = split
        self.image_dir = Path(image_dir)
        self.mask_dir = Path(mask_dir)
        for directory, kind, ext in ((self.image_dir, "images", image_ext), (self.mask_dir, "masks", mask_ext)):
            if not directory.is_dir():
                raise FileNotFoundError(
                    f"{split}/{name}: {kind} folder {directory} does not exist; expected a folder of *{image_ext} "
                    f"images and *{mask_ext} masks paired by file stem (images in {self.image_dir}, masks in "
                    f"{self.mask_dir})"
                )
        images = _files_by_stem(self.image_dir, image_ext)
        masks = _files_by_stem(self.mask_dir, mask_ext)
        paired = sorted(images.keys() & masks.keys())
        held = set(held_out_stems(paired, holdout))
        mine = [stem for stem in paired if (stem in held) == (split == "val")] if held else paired
        other = sorted(set(paired) - set(mine))
        self._images = [images[stem] for stem in mine]
        self._masks = [masks[stem] for stem in mine]
        self.report = SourceReport(
            split=split,
            name=name,
            expected=expected,
            found_images=len(images),
            found_masks=len(masks),
            paired=len(paired),
            usable=len(mine),
            unpaired_images=sorted(images.keys() - masks.keys()),
            unpaired_masks=sorted(masks.keys() - images.keys()),
            validated=validate,
            holdout=holdout,
            other_split=other,
        )
        keep = self._validate(mine, workers) if validate else list(range(len(mine)))
        self.stems: List[str] = [mine[i] for i in keep]
        self._images = [self._images[i] for i in keep]
        self._masks = [self._masks[i] for i in keep]
        self.report.usable = len(keep)

    @classmethod
    def from_spec(cls, root: PathLike, spec: SourceSpec, validate: bool = True) -> "FolderSource":
        """The source `spec` describes, under the dataset root `root`."""
        root = Path(root)
        return cls(
            spec.name, root / spec.image_dir, root / spec.mask_dir, spec.image_ext, spec.mask_ext,
            expected=spec.expected, split=spec.split, validate=validate,
        )

    def _validate(self, paired: List[str], workers: int) -> List[int]:
        """Check every pair, fill the report; return the indices of the usable pairs."""
        with ThreadPoolExecutor(max(1, workers)) as pool:
            checks = pool.map(_check_pair, self._images, self._masks)
            checks = list(tqdm(checks, total=len(paired), desc=f"checking {self.name}", unit="mask", disable=None))
        keep = []
        for index, (convention, problem) in enumerate(checks):
            if problem is not None:
                self.report.unreadable.append(problem)
                continue
            self.report.conventions[convention] = self.report.conventions.get(convention, 0) + 1
            if convention == "empty":
                self.report.empty_masks.append(paired[index])
            else:
                keep.append(index)
        return keep

    def __len__(self) -> int:
        return len(self.stems)

    def fingerprint(self) -> str:
        """A digest of the samples' stems and their image and mask file sizes: what `hqsam.provenance` records of
        the data (cheap for 44K files; a regenerated set with other contents almost always differs in sizes)."""
        digest = hashlib.sha256()
        for stem, image, mask in zip(self.stems, self._images, self._masks):
            digest.update(f"{stem}\0{image.stat().st_size}\0{mask.stat().st_size}\n".encode())
        return digest.hexdigest()

    def __getitem__(self, index: int) -> Sample:
        image = read_image(self._images[index])
        gray = read_gray_mask(self._masks[index])
        mask, convention = binarize_mask(gray)
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"mask {self._masks[index]} is {mask.shape[1]}x{mask.shape[0]} but image {self._images[index]} "
                f"is {image.shape[1]}x{image.shape[0]}"
            )
        soft = gray.astype(np.float32) / (1.0 if convention == "0/1" else 255.0)
        return Sample(image=image, mask=mask, name=f"{self.name}/{self.stems[index]}", soft=soft)

    def __repr__(self) -> str:
        return f"FolderSource({self.split}/{self.name}, {len(self)} samples, images in {self.image_dir})"


def _specs(layout: Layout, split: Optional[str]) -> List[SourceSpec]:
    if split is not None and split not in {spec.split for spec in layout}:
        raise ValueError(f"split {split!r} is not in the layout; its splits: {sorted({s.split for s in layout})}")
    return [spec for spec in layout if split is None or spec.split == split]


def missing_sources(root: PathLike, layout: Layout, split: Optional[str] = None) -> List[SourceSpec]:
    """The sources of `layout` (in `split`, if given) whose image or mask folder is absent under `root`."""
    root = Path(root)
    return [
        spec
        for spec in _specs(layout, split)
        if not (root / spec.image_dir).is_dir() or not (root / spec.mask_dir).is_dir()
    ]


def read_layout(
    root: PathLike, layout: Layout, split: Optional[str] = None, validate: bool = True
) -> List[FolderSource]:
    """The sources of `layout` (in `split`, if given) under the dataset root `root`.

    Every source must be present: otherwise FileNotFoundError names all missing folders. To read the present
    ones only, pass `tuple(s for s in layout if s not in missing_sources(root, layout))`.
    """
    root = Path(root)
    missing = missing_sources(root, layout, split)
    if missing:
        folders = "; ".join(f"{spec.name}: {root / spec.image_dir}" for spec in missing)
        if set(layout) <= set(HQSEG44K_LAYOUT):
            hint = f"download and extract HQSeg-44K with `hqsam download-data --dir {root}`"
        else:
            hint = "see hqsam/data/layout.py for the folders each source needs"
        raise FileNotFoundError(f"{len(missing)} source(s) missing under {root} ({folders}); {hint}")
    return [FolderSource.from_spec(root, spec, validate=validate) for spec in _specs(layout, split)]


def validation_report(sources: Iterable) -> pd.DataFrame:
    """One row per source (anything with a `report: SourceReport`), columns of `SourceReport.row`."""
    return pd.DataFrame([source.report.row() for source in sources])
