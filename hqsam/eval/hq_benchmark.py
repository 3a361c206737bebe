"""The paper's HQ benchmark protocol (DIS5K-VD, COIFT, HRSOD, ThinObject5K-TE, and the toy world's sets).

Per image: image and GT resized to exactly S x S (S = the model's input size, 1024 for the released models;
aspect ratio not kept), the tight box of the resized GT (> 0.5) as the prompt, single-mask output; SAM's own mask
and HQ-SAM's (HQ token alone by default) from one encoder pass (`hqsam.decoding`); the low-res logits bilinearly
upsampled straight to the original GT size and thresholded at 0; IoU and boundary IoU at that size.

The frozen encoder runs in float32 unless `precision="bf16"` (bfloat16 autocast; the release runs float32), the
same setting training uses (`hqsam.decoding.encode_pixels`). Many processes can share one evaluation (`shard`): each scores every
world-th chunk of `images_per_pass` images and the rows are gathered in the single-process order; each chunk is
batched as one process batches it, so the rows are the same.
"""

import sys
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from .. import provenance
from ..decoding import MODELS, Encoded, decode, encode
from ..metrics import boundary_iou, mask_iou
from ..modeling import HQSam
from ..prompts import boxes_from_masks



def resize_sample(sample, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The protocol's resize: the image (3 x S x S float) and the soft GT (S x S float), on the CPU."""
    image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1)[None].float()
    mask = torch.from_numpy(np.ascontiguousarray(sample.mask))[None, None].float()
    image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)
    mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
    return image[0], mask[0, 0]


def encode_chunk(model: HQSam, chunk: Sequence, precision: str = "fp32") -> Tuple[Encoded, torch.Tensor]:
    """The protocol's encoder pass for a chunk of samples: their `Encoded` features (both models) and their
    resized soft GTs, N x S x S on the CPU (the prompts are computed on them, > 0.5)."""
    images, masks = zip(*(resize_sample(sample, model.image_encoder.img_size) for sample in chunk))
    return encode(model, model.preprocess(torch.stack(images).to(model.device)), precision), torch.stack(masks)


def protocol_mask(logits: torch.Tensor, shape: Tuple[int, int]) -> np.ndarray:
    """1 x h x w low-res logits upsampled bilinearly to `shape` (the GT's size) and thresholded at 0: H x W bool."""
    pred = F.interpolate(logits[None].float(), size=shape, mode="bilinear", align_corners=False)
    return (pred[0, 0] > 0).cpu().numpy()


def score(logits: torch.Tensor, gt: np.ndarray) -> Dict[str, float]:
    """1 x h x w low-res logits upsampled to the GT's size, > 0, scored against the GT."""
    return score_mask(protocol_mask(logits, gt.shape), gt)


def score_mask(pred: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """The protocol's IoU and boundary IoU of an H x W bool mask against the GT."""
    return {"iou": mask_iou(gt, pred), "biou": boundary_iou(gt, pred)}


@torch.no_grad()
def protocol_masks(model: HQSam, chunk: Sequence, hq_token_only: bool = True,
                   precision: str = "fp32") -> Tuple[List[Dict[str, np.ndarray]], torch.Tensor]:
    """The masks this protocol scores for a chunk of samples: per sample {model name: H x W bool at its GT's size},
    and the N x 4 box prompts (x0, y0, x1, y1 in the S x S frame the protocol resizes to)."""
    encoded, masks = encode_chunk(model, chunk, precision)
    boxes = boxes_from_masks(masks[:, None])
    sparse, dense = model.prompt_encoder(points=None, boxes=boxes.to(model.device), masks=None)
    decoded = decode(model, encoded, sparse, dense, hq_token_only=hq_token_only)
    return [{name: protocol_mask(decoded[name].logits[i], sample.mask.shape) for name in MODELS}
            for i, sample in enumerate(chunk)], boxes


def _score_chunk(model: HQSam, dataset: str, chunk: List, hq_token_only: bool, precision: str) -> List[dict]:
    predicted, _ = protocol_masks(model, chunk, hq_token_only, precision)
    return [
        {"dataset": dataset, "image": sample.name, "model": name, **score_mask(masks[name], sample.mask)}
        for sample, masks in zip(chunk, predicted)
        for name in MODELS
    ]


COLUMNS = ["dataset", "image", "model", "iou", "biou"]
METRIC_LABELS = (("iou", "mIoU"), ("biou", "mBIoU"))


def evaluate_hq_datasets(
    model: HQSam,
    sources: Sequence,
    max_images: Optional[int] = None,
    hq_token_only: bool = True,
    images_per_pass: int = 4,
    progress: bool = True,
    rows_file: Optional[Union[str, Path]] = None,
    precision: str = "fp32",
    shard: Tuple[int, int] = (0, 1),
) -> pd.DataFrame:
    """Per-image rows (dataset, image, model, iou, biou) for SAM and HQ-SAM on each source (`.name`, Samples).

    The rows carry their provenance (`rows.attrs["provenance"]`, `hqsam.provenance.evaluation`: the weights, the
    data, the precision and these settings). With `rows_file`, rows are saved there (atomically, with their
    provenance beside them) after every chunk of images, and a rerun with the same provenance resumes: the images
    of each dataset already scored are skipped (sources are read in their fixed order); rows of another provenance
    are not reused (the evaluation starts over and says why). See `SavedRows`.
    With `shard=(rank, world)`, world > 1, every process of the default process group calls this with its rank
    and scores its chunks (`shard_chunks`); each returns all the rows, in the single-process order.
    """
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
    if world > 1 and rows_file is not None:
        raise ValueError("rows_file (resumable evaluation) needs a single process: pass shard=(0, 1) or no rows_file")
    saved = SavedRows(rows_file, benchmark_provenance(model, sources, max_images, hq_token_only, images_per_pass,
                                                      precision), COLUMNS)
    mine: List[Tuple[int, pd.DataFrame]] = []
    for ordinal, source, start, chunk in chunks_to_score(sources, saved.todo(sources, max_images), images_per_pass,
                                                         shard, progress):
        new = pd.DataFrame(_score_chunk(model, source.name, chunk, hq_token_only, precision), columns=COLUMNS)
        mine.append((ordinal, new))
        saved.add(source.name, start + len(chunk), new)
    if world > 1:
        everyone: List[List[Tuple[int, pd.DataFrame]]] = [[] for _ in range(world)]
        dist.all_gather_object(everyone, mine)
        frames = [frame for _, frame in sorted((pair for part in everyone for pair in part), key=lambda pair: pair[0])]
        return saved.result(pd.concat(frames, ignore_index=True) if frames else None)
    return saved.result()


class SavedRows:
    """An evaluation's rows as they come, with their provenance (`made`); with a `path`, saved there after every
    chunk (atomically) with, per dataset, how many of its first images are done, so that an interrupted run
    resumes: a rerun of the same provenance (`hqsam.provenance.resumable`) keeps those rows and scores the rest,
    and rows of another provenance (or that do not match the record) are never reused. Images that cannot be
    scored are recorded with `leave_out`."""

    def __init__(self, path: Optional[Union[str, Path]], made: dict, columns: Sequence[str]) -> None:
        self.path, self.made = (Path(path) if path is not None else None), made
        self.frame = pd.DataFrame(columns=list(columns))
        self.done: Dict[str, int] = {}  # per dataset, how many of its first images are scored
        self.left_out: Dict[str, List[str]] = {}  # per dataset, images scored as impossible (no rows)
        if self.path is not None and provenance.resumable(self.path, made):
            saved, frame = provenance.read_provenance(self.path), pd.read_csv(self.path)
            done, left_out = saved.get("done", {}), saved.get("left_out", {})
            images = frame.groupby("dataset")["image"].nunique()
            if {name: int(count) for name, count in images.items()} == {
                    name: count - len(left_out.get(name, [])) for name, count in done.items()
                    if count > len(left_out.get(name, []))}:
                self.frame, self.done, self.left_out = frame, dict(done), {k: list(v) for k, v in left_out.items()}
            else:
                print(f"{self.path} does not hold the images its provenance says are done: starting over",
                      file=sys.stderr)

    def todo(self, sources: Sequence, max_images: Optional[int]) -> List[range]:
        """Per source, the indices of the images still to score (`first_images` less those done)."""
        return [range(min(self.done.get(source.name, 0), first.stop), first.stop)
                for source, first in zip(sources, first_images(sources, max_images))]

    def add(self, dataset: str, done: int, rows: Union[pd.DataFrame, List[dict]]) -> None:
        """The rows of a chunk of `dataset`, after which its first `done` images are scored."""
        rows = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=self.frame.columns)
        self.frame = pd.concat([self.frame, rows], ignore_index=True) if len(self.frame) else rows
        self.done[dataset] = done
        if self.path is not None:
            provenance.save_csv(self.frame, self.path, self.provenance(), index=False)

    def leave_out(self, dataset: str, image: str) -> None:
        """Record that `image` of `dataset` cannot be scored (it gets no rows); call before its chunk's `add`."""
        self.left_out.setdefault(dataset, []).append(image)

    def provenance(self) -> dict:
        return {**self.made, "done": self.done, "left_out": self.left_out}

    def result(self, rows: Optional[pd.DataFrame] = None) -> pd.DataFrame:
        """The rows (`rows`, when gathered from many processes, else those kept), their provenance attached."""
        rows = (self.frame if rows is None else rows).reset_index(drop=True)
        rows.attrs["provenance"] = self.provenance()
        return rows


def benchmark_provenance(model: HQSam, sources: Sequence, max_images: Optional[int] = None, hq_token_only: bool = True,
                         images_per_pass: int = 4, precision: str = "fp32") -> dict:
    """The provenance of `evaluate_hq_datasets` with these arguments (`hqsam.provenance.evaluation`)."""
    return provenance.evaluation("hq_benchmark", __name__, model, sources, precision, max_images, hq_token_only=hq_token_only,
                                 images_per_pass=images_per_pass)


def shard_chunks(
    images: Sequence[range], images_per_pass: int, shard: Tuple[int, int] = (0, 1)
) -> List[Tuple[int, int, int, int]]:
    """The chunks of `images_per_pass` images (per source, a range of image indices) that one process scores:
    (ordinal, source index, first image, end image). Chunk k of them all (k counting on across sources) goes to
    rank k % world, so every image is scored once and in the chunk it would have in one process."""
    if images_per_pass < 1:
        raise ValueError(f"images_per_pass must be at least 1, got {images_per_pass}")
    rank, world = shard
    every = [
        (which, start, min(start + images_per_pass, todo.stop))
        for which, todo in enumerate(images)
        for start in range(todo.start, todo.stop, images_per_pass)
    ]
    return [(ordinal, *chunk) for ordinal, chunk in enumerate(every) if ordinal % world == rank]


def first_images(sources: Sequence, max_images: Optional[int]) -> List[range]:
    """Per source, the indices of the images an evaluation scores: its first `max_images` (all with None)."""
    if max_images is not None and max_images < 0:
        raise ValueError(f"max_images must be >= 0 or None, got {max_images}")
    return [range(len(source) if max_images is None else min(max_images, len(source))) for source in sources]


def chunks_to_score(
    sources: Sequence,
    images: Sequence[range],
    images_per_pass: int,
    shard: Tuple[int, int] = (0, 1),
    progress: bool = True,
) -> Iterator[Tuple[int, object, int, List]]:
    """(ordinal, source, index of the first image, samples) of each chunk this process scores (`shard_chunks` of
    `images`, per source a range of image indices), in order, with a progress bar."""
    chunks = shard_chunks(images, images_per_pass, shard)
    bar = tqdm(total=sum(stop - start for _, _, start, stop in chunks), desc="eval", unit="img", disable=not progress,
               leave=False)
    for ordinal, which, start, stop in chunks:
        source = sources[which]
        bar.set_description(f"eval {source.name}")
        yield ordinal, source, start, [source[i] for i in range(start, stop)]
        bar.update(stop - start)
    bar.close()


def summarize(
    rows: pd.DataFrame, by: Union[str, Sequence[str]] = (), datasets: Optional[Iterable[str]] = None
) -> pd.DataFrame:
    """mIoU and mBIoU (x100, as the paper prints them) per model, and per setting with `by`: per dataset, and the
    mean of the dataset means ("average").

    Arguments:
      rows (pd.DataFrame): per-image rows of `evaluate_hq_datasets`, `evaluate_box_noise` or `evaluate_points`.
      by (str or list): the setting's columns, e.g. "noise_scale" or ["pos_points", "neg_points"]; none for the
        plain benchmark.
      datasets (iterable or None): the datasets and their order; None: all, in order of appearance.

    Returns:
      pd.DataFrame indexed by model (SAM first), or by (model, *by), columns "<dataset> mIoU", "<dataset> mBIoU"
      per dataset, "average mIoU", "average mBIoU". A dataset mean averages all its rows (trials included); an
      average is NaN where a dataset has no rows.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [column for column in ["dataset", "model", "iou", "biou", *by] if column not in rows.columns]
    if missing:
        raise ValueError(f"rows lack the columns {missing}; they have {list(rows.columns)}")
    names = list(datasets) if datasets is not None else list(dict.fromkeys(rows["dataset"]))
    means = rows.groupby(["model", *by, "dataset"], sort=False)[["iou", "biou"]].mean().mul(100).unstack("dataset")
    table = pd.DataFrame(
        {f"{dataset} {label}": means[(metric, dataset)] for dataset in names for metric, label in METRIC_LABELS},
        index=means.index,
    )
    for metric, label in METRIC_LABELS:
        table[f"average {label}"] = table[[f"{dataset} {label}" for dataset in names]].mean(axis=1, skipna=False)
    order = {name: rank for rank, name in enumerate(MODELS)}
    table = table.sort_index(key=lambda level: level.map(order) if level.name == "model" else level)
    table.attrs = dict(rows.attrs)  # the rows' provenance is the summary's
    return table
