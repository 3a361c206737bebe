"""The toy profile's stand-in for a released SAM: the `toy` backbone trained as plain SAM on the toy world.

No SAM weights can be had offline, so the toy profile first trains every part of a small SAM (encoder, prompt
encoder, decoder) on single objects and multi-object scenes with box, point and mask prompts, supervised only with
coarse masks (the GT at the decoder's low-res grid or coarser, as SAM's own training masks are), and saves it as a
plain SAM checkpoint. The package ships one such checkpoint (`hqsam.toy.release`, made by `make toy-sam`), frozen
and treated exactly like a released SAM.
"""

import math
import time
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader
from tqdm import tqdm

from .. import provenance
from ..build import build_hqsam
from ..checkpoint import is_hq_parameter, save_state_dict
from ..data.layout import TOY_LAYOUT
from ..data.sources import read_layout
from ..seeding import keyed_generator
from ..train.examples import TrainingExamples, collate, epoch_batches
from ..train.head import embed_prompts, in_example_order
from ..train.logs import CsvLog
from ..train.loss import dense_mask_loss
from .world import read_toy_scenes

PathLike = Union[str, Path]
# The clicks' stream: a string part keeps these keys apart from the training examples' all-integer ones.
CLICKS_STREAM = "toy SAM clicks"


def loss_log_path(checkpoint: PathLike) -> Path:
    """The per-step loss log `train_toy_sam` writes beside its checkpoint: sam_toy.pth -> sam_toy.losses.csv."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.losses.csv")


def train_toy_sam(
    data_root: PathLike,
    output: PathLike,
    steps: int = 2000,
    batch_size: int = 8,
    coarse_size: int = 32,
    lr: float = 5e-4,
    seed: int = 0,
    progress: bool = True,
    scenes: Optional[PathLike] = None,
) -> Path:
    """Train a toy SAM on the toy world's training split and save it (SAM keys only) to `output`; returns its path.

    The coarse GT is the mask area-averaged onto a `coarse_size` grid and smoothly upsampled to the decoder's
    low-res grid: like SA-1B's masks, right in the large but blind to detail finer than a grid cell, which is
    the gap HQ-SAM's fine-mask training closes. Single-mask token: BCE + Dice against it at every low-res pixel;
    multimask tokens: the best of three (SAM's ambiguity rule); IoU head: MSE against the IoU its masks really
    reach. Prompts: box, 1-10 positive points, noisy mask. Data: the toy world's training split, plus one sample
    per object of the multi-object `scenes` (`generate_toy_scenes`'s folder) when given: a SAM trained on single
    objects learns to ignore its box.

    Each step's losses (step, loss and its terms: mask, multimask, iou; lr) are appended to
    `loss_log_path(output)` as the run goes, a fresh file per run. The weights start from `torch.manual_seed(seed)`
    (module initialisation takes no generator); every later draw is keyed by `seed`.
    """
    torch.manual_seed(seed)
    model = build_hqsam("toy").train()
    for name, parameter in model.named_parameters():
        parameter.requires_grad = not is_hq_parameter(name)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )
    sources = read_layout(data_root, TOY_LAYOUT, split="train")
    if scenes is not None:
        sources.append(read_toy_scenes(scenes))
    examples = TrainingExamples(
        ConcatDataset(sources),
        image_size=model.image_encoder.img_size,
        mask_input_size=tuple(model.prompt_encoder.mask_input_size),
        seed=seed,
        scale_range=(0.5, 1.5),
        flip_prob=0.5,
        prompt_kinds=("box", "point", "noise_mask"),
        num_points=10,
    )
    low_res = tuple(model.prompt_encoder.mask_input_size)
    log_path = loss_log_path(output)
    log_path.unlink(missing_ok=True)
    log = CsvLog(log_path)
    started, step, epoch = time.perf_counter(), 0, 0
    bar = tqdm(total=steps, desc="toy SAM", unit="step", disable=not progress, dynamic_ncols=True)
    while step < steps:
        batches = [[(epoch, i) for i in b] for b in epoch_batches(len(examples), batch_size, seed, epoch)]
        for batch in DataLoader(examples, batch_sampler=batches[: steps - step], collate_fn=collate):
            generator = keyed_generator(seed, CLICKS_STREAM, step)
            for i, points in enumerate(batch["points"]):  # 1 to 10 clicks, so single clicks work too
                if points is not None and len(points) > 1:
                    batch["points"][i] = points[: int(torch.randint(1, len(points) + 1, (1,), generator=generator))]
            embeddings, _ = model.encode_image(model.preprocess(batch["image"]))
            groups = embed_prompts(model, batch, grad=True)
            image_pe = model.prompt_encoder.get_dense_pe()
            decoded = [
                model.mask_decoder.predict_masks_hq(embeddings, image_pe, sparse, dense, None, indices)
                for indices, sparse, dense in groups
            ]
            masks = in_example_order(groups, [result.sam_masks for result in decoded])
            iou = in_example_order(groups, [result.sam_iou for result in decoded])
            coarse = F.interpolate(batch["target"], size=(coarse_size, coarse_size), mode="area")
            target = F.interpolate(coarse, size=low_res, mode="bilinear", align_corners=False)
            losses = dense_mask_loss(masks, target)
            with torch.no_grad():
                hard = target > 0.5
                predicted = masks > 0
                reached = (predicted & hard).sum(dim=(2, 3)) / (predicted | hard).sum(dim=(2, 3)).clamp(min=1)
            terms = {
                "mask": losses[:, 0].mean(),
                "multimask": losses[:, 1:].min(dim=1).values.mean(),
                "iou": F.mse_loss(iou, reached),
            }
            loss = sum(terms.values())
            log.append({"step": step, "loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                        "lr": schedule.get_last_lr()[0]})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update(1)
        epoch += 1
    bar.close()
    state = {k: v for k, v in model.state_dict().items() if not is_hq_parameter(k)}
    path = save_state_dict(state, output)
    provenance.write_provenance(path, toy_sam_provenance(data_root, scenes, steps=steps, batch_size=batch_size,
                                                         coarse_size=coarse_size, lr=lr, seed=seed))
    if progress:
        print(f"toy SAM: {steps} steps in {time.perf_counter() - started:.0f} s, saved to {path} (losses: {log_path})")
    return path


def toy_sam_provenance(data_root: PathLike, scenes: Optional[PathLike], **settings: float) -> dict:
    """The provenance of `train_toy_sam` with these arguments (`hqsam.provenance`): its training data and
    settings, and its code."""
    sources = read_layout(data_root, TOY_LAYOUT, split="train", validate=False)
    if scenes is not None:
        sources.append(read_toy_scenes(scenes))
    return provenance.describe("toy_sam", {"data": provenance.data_identity(sources)}, settings, __name__)
