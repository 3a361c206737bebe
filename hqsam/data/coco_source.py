"""COCO-style instance annotations as a source of (image, one instance's mask) samples.

Each usable annotation is one sample, so an image with several objects yields several samples. Annotations are
left out, counted and named in `report` when they are crowd regions, lack a segmentation, point to an image file
that is absent (or not listed in the file), to an unreadable image, or rasterise to fewer than `min_area`
pixels. The area is computed from the rasterised segmentation (not the file's "area" field), so it matches the
mask a sample gets.
"""

import hashlib
import contextlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tqdm import tqdm

from .sources import VALIDATION_WORKERS, PathLike, Sample, SourceReport, _reason, image_size, read_image


def _load_coco(annotation_file: Path) -> COCO:
    if not annotation_file.is_file():
        raise FileNotFoundError(
            f"annotation file {annotation_file} does not exist; for COCO val2017 run "
            "`hqsam download coco_annotations_trainval2017` and extract instances_val2017.json"
        )
    try:
        dataset = json.loads(annotation_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{annotation_file} is not valid JSON ({error})") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list) or not isinstance(
        dataset.get("annotations"), list
    ):
        raise ValueError(f"{annotation_file} is not a COCO instances file (no 'images' and 'annotations' lists)")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress lines
        coco.createIndex()
    return coco


class CocoInstanceSource:
    """One sample per instance annotation of a COCO-style file, in annotation-file order.

    `image_ids[i]` and `annotation_ids[i]` identify sample i. With `validate=True` the header of every image
    that has annotations is read once here (unreadable files and sizes differing from the file's width/height
    are reported); with `validate=False` only the existence of image files is checked.
    """

    def __init__(
        self,
        image_dir: PathLike,
        annotation_file: PathLike,
        min_area: int = 1,
        validate: bool = True,
        name: str = "coco",
        split: str = "train",
        workers: int = VALIDATION_WORKERS,
    ) -> None:
        self.name = name
        self.split = split
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"{split}/{name}: image folder {self.image_dir} does not exist")
        self.coco = _load_coco(Path(annotation_file))
        annotations = self.coco.dataset["annotations"]
        present = {path.name for path in self.image_dir.iterdir()}
        report = SourceReport(
            split=split, name=name, expected=None, found_images=len(self.coco.imgs),
            found_masks=len(annotations), paired=0, usable=0, validated=validate,
            unpaired_images=sorted(
                str(image["file_name"]) for image_id, image in self.coco.imgs.items()
                if not self.coco.imgToAnns.get(image_id)
            ),
        )
        candidates = []
        for annotation in annotations:
            image = self.coco.imgs.get(annotation["image_id"])
            if annotation.get("iscrowd", 0):
                report.excluded.append((f"annotation {annotation['id']}", "crowd"))
            elif "segmentation" not in annotation:
                report.excluded.append((f"annotation {annotation['id']}", "no segmentation"))
            elif image is None or image["file_name"] not in present:
                report.unpaired_masks.append(str(annotation["id"]))
            else:
                candidates.append(annotation)
        report.paired = len(candidates)
        broken = self._check_images(candidates, report, workers) if validate else set()
        self._annotations: List[dict] = []
        for annotation in candidates:
            if annotation["image_id"] in broken:
                continue
            if mask_utils.area(self.coco.annToRLE(annotation)) < min_area:
                report.empty_masks.append(str(annotation["id"]))
            else:
                self._annotations.append(annotation)
        report.usable = len(self._annotations)
        self.report = report
        self.image_ids: List[int] = [annotation["image_id"] for annotation in self._annotations]
        self.annotation_ids: List[int] = [annotation["id"] for annotation in self._annotations]

    def _check_images(self, candidates: List[dict], report: SourceReport, workers: int) -> set:
        """Read the header of every image with candidate annotations; return the ids of the unreadable ones."""
        image_ids = sorted({annotation["image_id"] for annotation in candidates})

        def check(image_id: int) -> Optional[Tuple[str, str]]:
            record = self.coco.imgs[image_id]
            path = self.image_dir / record["file_name"]
            try:
                width, height = image_size(path)
            except ValueError as error:
                return str(path), _reason(error, path)
            if (width, height) != (record["width"], record["height"]):
                listed = f"{record['width']}x{record['height']}"
                return str(path), f"image is {width}x{height} but the annotation file says {listed}"
            return None

        with ThreadPoolExecutor(max(1, workers)) as pool:
            checks = tqdm(
                pool.map(check, image_ids), total=len(image_ids), desc=f"checking {self.name}", unit="image",
                disable=None,
            )
            problems: Dict[int, Optional[Tuple[str, str]]] = dict(zip(image_ids, checks))
        report.unreadable.extend(problem for problem in problems.values() if problem is not None)
        return {image_id for image_id, problem in problems.items() if problem is not None}

    def __len__(self) -> int:
        return len(self._annotations)

    def fingerprint(self) -> str:
        """A digest of the samples' annotations (their ids and masks) and their images' file sizes: what
        `hqsam.provenance` records of the data."""
        digest = hashlib.sha256()
        for annotation in self._annotations:
            image = self.image_dir / self.coco.imgs[annotation["image_id"]]["file_name"]
            digest.update(f"{annotation['id']}\0{self.coco.annToRLE(annotation)['counts']}\0{image.stat().st_size}\n"
                          .encode())
        return digest.hexdigest()

    def __getitem__(self, index: int) -> Sample:
        annotation = self._annotations[index]
        record = self.coco.imgs[annotation["image_id"]]
        path = self.image_dir / record["file_name"]
        image = read_image(path)
        if image.shape[:2] != (record["height"], record["width"]):
            raise ValueError(
                f"image {path} is {image.shape[1]}x{image.shape[0]} but the annotation file says "
                f"{record['width']}x{record['height']}"
            )
        mask = self.coco.annToMask(annotation).astype(bool)
        return Sample(image=image, mask=mask, name=f"{self.name}/{Path(record['file_name']).stem}#{annotation['id']}")

    def __repr__(self) -> str:
        return f"CocoInstanceSource({self.split}/{self.name}, {len(self)} instances, images in {self.image_dir})"
