"""The paper's HQ benchmark protocol (DIS5K-VD, COIFT, HRSOD, ThinObject5K-TE, and the toy world's sets).

Per image: image and GT resized to exactly S x S (S = the model's input size, 1024 for the released models;
aspect ratio not kept), the tight box of the resized GT (> 0.5) as the prompt, single-mask output; SAM's own mask
(`forward_sam`) and HQ-SAM's (HQ token alone by default) from one encoder pass; the low-res logits bilinearly
upsampled straight to the original GT size and thresholded at 0; IoU and boundary IoU at that size.

The frozen encoder runs in float32 unless `precision="bf16"` (bfloat16 autocast; the release runs float32), the
same setting training uses (`encode_pixels`). Many processes can share one evaluation (`shard`): each scores every
world-th chunk of `images_per_pass` images and the rows are gathered in the single-process order; each chunk is
batched as one process batches it, so the rows are the same.
"""

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..io import atomic_write
from ..metrics import boundary_iou, mask_iou
from ..modeling import HQSam
from ..prompts import boxes_from_masks

MODELS = ("SAM", "HQ-SAM")
PRECISIONS = ("fp32", "bf16")


def resize_sample(sample, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The protocol's resize: the image (3 x S x S float) and the soft GT (S x S float), on the CPU."""
    image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1)[None].float()
    mask = torch.from_numpy(np.ascontiguousarray(sample.mask))[None, None].float()
    image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)
    mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
    return image[0], mask[0, 0]


def encode_pixels(model: HQSam, pixels: torch.Tensor, precision: str = "fp32") -> Tuple[torch.Tensor, torch.Tensor]:
    """The frozen image encoder on B x 3 x S x S preprocessed pixels (`model.preprocess`): B x C x E x E
    embeddings and B x E x E x vit_dim early features, float32. "fp32" runs it as it is; "bf16" under bfloat16
    autocast on the pixels' device (CPU included), the outputs cast back."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        embeddings, early = model.encode_image(pixels)
    return embeddings.float(), early.float()


def encode(model: HQSam, images: Sequence[torch.Tensor], precision: str = "fp32") -> Tuple[torch.Tensor, torch.Tensor]:
    """Image embeddings and HQ features of resized images: the one encoder pass both models share (callers
    run it without autograd); `precision` as in `encode_pixels`."""
    embeddings, early = encode_pixels(model, model.preprocess(torch.stack(images).to(model.device)), precision)
    return embeddings, model.mask_decoder.hq_features(embeddings, early)


def decode(
    model: HQSam,
    embeddings: torch.Tensor,
    hq_features: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    image_index: torch.Tensor,
    hq_token_only: bool,
) -> Dict[str, torch.Tensor]:
    """B x 1 x 4h x 4w low-res logits per model, single-mask output; image_index as in MaskDecoderHQ."""
    decoder, image_pe = model.mask_decoder, model.prompt_encoder.get_dense_pe()
    return {
        "SAM": decoder.forward_sam(
            embeddings, image_pe, sparse, dense, multimask_output=False, image_index=image_index
        )[0],
        "HQ-SAM": decoder(
            embeddings, image_pe, sparse, dense, multimask_output=False, hq_token_only=hq_token_only,
            hq_features=hq_features, image_index=image_index,
        )[0],
    }


def score(logits: torch.Tensor, gt: np.ndarray) -> Dict[str, float]:
    """1 x h x w low-res logits upsampled to the GT's size, > 0, scored against the GT."""
    pred = F.interpolate(logits[None].float(), size=gt.shape, mode="bilinear", align_corners=False)
    pred = (pred[0, 0] > 0).cpu().numpy()
    return {"iou": mask_iou(gt, pred), "biou": boundary_iou(gt, pred)}


@torch.no_grad()
def _score_chunk(model: HQSam, dataset: str, chunk: List, hq_token_only: bool, precision: str) -> List[dict]:
    images, masks = zip(*(resize_sample(sample, model.image_encoder.img_size) for sample in chunk))
    embeddings, hq_features = encode(model, images, precision)
    boxes = boxes_from_masks(torch.stack(masks)[:, None]).to(model.device)
    sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
    logits = decode(model, embeddings, hq_features, sparse, dense, None, hq_token_only)
    return [
        {"dataset": dataset, "image": sample.name, "model": name, **score(logits[name][i], sample.mask)}
        for i, sample in enumerate(chunk)
        for name in MODELS
    ]


COLUMNS = ["dataset", "image", "model", "iou", "biou"]


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

    With `rows_file`, rows are saved there (atomically) after every chunk of images, and a rerun resumes: the
    images of each dataset already scored for both models are skipped (sources are read in their fixed order).
    With `shard=(rank, world)`, world > 1, every process of the default process group calls this with its rank
    and scores its chunks (`shard_chunks`); each returns all the rows, in the single-process order.
    """
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
    if world > 1 and rows_file is not None:
        raise ValueError("rows_file (resumable evaluation) needs a single process: pass shard=(0, 1) or no rows_file")
    rows = pd.read_csv(rows_file) if rows_file is not None and Path(rows_file).exists() else pd.DataFrame(columns=COLUMNS)
    todo = []  # per source, the images still to score
    for source in sources:
        count = len(source) if max_images is None else min(max_images, len(source))
        scored = rows[rows["dataset"] == source.name].groupby("image")["model"].nunique()
        todo.append(range(min(int((scored == len(MODELS)).sum()), count), count))
        rows = rows[(rows["dataset"] != source.name) | rows["image"].isin(scored.index[scored == len(MODELS)])]
    chunks = shard_chunks(todo, images_per_pass, shard)
    bar = tqdm(total=sum(stop - start for _, _, start, stop in chunks), desc="eval", unit="img", disable=not progress,
               leave=False)
    mine: List[Tuple[int, pd.DataFrame]] = []
    for ordinal, which, start, stop in chunks:
        source = sources[which]
        bar.set_description(f"eval {source.name}")
        new = pd.DataFrame(
            _score_chunk(model, source.name, [source[i] for i in range(start, stop)], hq_token_only, precision),
            columns=COLUMNS,
        )
        mine.append((ordinal, new))
        rows = pd.concat([rows, new], ignore_index=True) if len(rows) else new
        if rows_file is not None:
            with atomic_write(rows_file, "w") as file:
                rows.to_csv(file, index=False)
        bar.update(stop - start)
    bar.close()
    if world > 1:
        everyone: List[List[Tuple[int, pd.DataFrame]]] = [[] for _ in range(world)]
        dist.all_gather_object(everyone, mine)
        frames = [frame for _, frame in sorted((pair for part in everyone for pair in part), key=lambda pair: pair[0])]
        rows = pd.concat(frames, ignore_index=True) if frames else rows
    return rows.reset_index(drop=True)


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


def summarize(rows: pd.DataFrame, datasets: Iterable[str] = None) -> pd.DataFrame:
    """Per-dataset mIoU and mBIoU (x100, as the paper prints them) per model, plus the mean of dataset means."""
    means = rows.groupby(["model", "dataset"], sort=False)[["iou", "biou"]].mean().mul(100)
    table = means.unstack("dataset")
    table.columns = [f"{dataset} {'mIoU' if metric == 'iou' else 'mBIoU'}" for metric, dataset in table.columns]
    names = list(datasets) if datasets is not None else list(dict.fromkeys(rows["dataset"]))
    ordered = [f"{d} {m}" for d in names for m in ("mIoU", "mBIoU")]
    table = table[ordered]
    table["average mIoU"] = means["iou"].unstack("dataset")[names].mean(axis=1)
    table["average mBIoU"] = means["biou"].unstack("dataset")[names].mean(axis=1)
    return table.reindex([m for m in MODELS if m in table.index])
