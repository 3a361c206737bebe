"""`fit(config)`: train HQ-SAM's added parts with SAM frozen, on one process or many (torchrun, DDP).

One readable loop: build the frozen model and the data, then for each step run the frozen encoder (no_grad,
fp32 or bf16 autocast: `precision`), embed the prompts, decode the HQ logits for the whole batch, take the
point-sampled BCE + Dice loss and step Adam. State is saved atomically every `checkpoint_every` steps and at each
epoch's end; `resume` continues from the latest state and ends with the same weights as an uninterrupted run.

`batch_size` is the global batch of one optimiser step. Each process takes a consecutive slice of it, in
micro-batches of `batch_per_gpu` samples whose gradients accumulate (DDP all-reduces after the last one only);
every per-sample loss is divided by the process's share, so the step equals one step on the whole global batch,
however it is split. Validation is split over the processes by chunks of images and gathered in one process's
order, so its files do not depend on the process count either.
"""

import dataclasses
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm import tqdm

from ..build import build_hqsam
from ..checkpoint import save_state_dict
from ..io import atomic_write
from ..data.layout import LAYOUTS
from ..data.sources import FolderSource, read_layout
from ..eval.hq_benchmark import evaluate_hq_datasets, summarize
from ..modeling import HQSam
from ..profiles import resolve_device
from .config import TrainConfig, save_config
from .examples import LOSS_STREAM, TrainingExamples, collate, epoch_batches, keyed_generator
from .head import HQLogits, embed_prompts, encode_frozen, hq_state
from .logs import CsvLog
from .loss import mask_loss

# Config keys that must not change when a run is resumed (the others, e.g. epochs or progress, may).
RECIPE_KEYS = (
    "model_type", "sam_checkpoint", "layout", "train_sources", "extra_sources", "lr", "betas", "eps",
    "weight_decay", "batch_size", "scale_range", "flip_prob", "prompt_kinds", "num_points", "loss_points",
    "oversample_ratio", "importance_ratio", "target", "precision", "seed", "cache_embeddings", "cache_augmentations",
)


@dataclass
class Process:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class FitResult:
    output_dir: Path
    checkpoint: Optional[Path]  # the exported HQ-SAM checkpoint (release format), on the main process
    steps: int
    seconds: float
    validation: Optional[pd.DataFrame]  # the last epoch's summary table, if validated


def start_process(device: str, timeout_min: float = 30.0) -> Process:
    """Join the torchrun process group if there is one (WORLD_SIZE > 1), its collectives failing after
    `timeout_min` minutes of waiting; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = torch.device(resolve_device(device))
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", timeout=timedelta(minutes=timeout_min))
    return Process(rank, world, local_rank, chosen)


def micro_batches(batch_size: int, batch_per_gpu: Optional[int], world: int) -> Tuple[int, int]:
    """(samples per process per step, micro-steps per step) for a global batch over `world` processes."""
    per_process, leftover = divmod(batch_size, world)
    micro = batch_per_gpu if batch_per_gpu is not None else per_process
    if leftover or per_process % micro:
        raise ValueError(
            f"batch_size {batch_size} (global) must be a multiple of {world} processes x batch_per_gpu {micro}; "
            "change batch_size or batch_per_gpu"
        )
    return per_process, per_process // micro


def load_frozen_model(config: TrainConfig, device: torch.device) -> HQSam:
    """HQ-SAM from the config's SAM checkpoint (HQ parts fresh) or HQ-SAM checkpoint; SAM frozen."""
    if config.sam_checkpoint is None:
        raise ValueError("sam_checkpoint is not set: HQ-SAM trains on top of a SAM checkpoint (see the README)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*plain SAM checkpoint.*")  # fresh HQ parts are the point here
        model = build_hqsam(config.model_type, config.sam_checkpoint)
    return model.to(device)


def build_sources(config: TrainConfig, split: str) -> List[Dataset]:
    """The layout's sources of one split (filtered by name), plus the config's extra sources for training."""
    names = config.train_sources if split == "train" else config.val_sources
    layout = [spec for spec in LAYOUTS[config.layout] if spec.split == split and (names is None or spec.name in names)]
    if names is not None:
        missing = sorted(set(names) - {spec.name for spec in layout})
        if missing:
            known = [spec.name for spec in LAYOUTS[config.layout] if spec.split == split]
            raise ValueError(f"unknown {split} sources {missing} in layout {config.layout!r}; known: {known}")
    sources: List[Dataset] = list(read_layout(config.data_root, tuple(layout), split=split)) if layout else []
    if split == "train":
        sources.extend(_extra_source(entry) for entry in config.extra_sources)
        if not sources:
            raise ValueError("no training sources: check train_sources and extra_sources")
    return sources


def _extra_source(entry: Dict) -> Dataset:
    kind = entry.get("type")
    arguments = {k: v for k, v in entry.items() if k != "type"}
    if kind == "folder":
        return FolderSource(**arguments)
    if kind == "coco":
        from ..data.coco_source import CocoInstanceSource

        return CocoInstanceSource(**arguments)
    raise ValueError(f"extra source {entry} needs type: folder (image_dir, mask_dir) or coco (image_dir, annotation_file)")


def _check_resumable(config: TrainConfig, saved: Path) -> None:
    import yaml

    before = yaml.safe_load(saved.read_text())
    now = dataclasses.asdict(config)
    changed = [key for key in RECIPE_KEYS if _plain(before.get(key)) != _plain(now[key])]
    if changed:
        raise ValueError(
            f"cannot resume: the recipe changed since {saved} was written ({', '.join(changed)}); "
            "use the same settings or a new output_dir"
        )


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


class EmbeddingCache:
    """The frozen encoder's outputs per (sample, augmentation), kept on the CPU and reused across epochs."""

    def __init__(self) -> None:
        self.entries: Dict[Tuple[int, int], Tuple[torch.Tensor, torch.Tensor]] = {}
        self.hits = self.misses = 0

    def encode(
        self, model: HQSam, batch: Dict, device: torch.device, precision: str
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        keys = list(zip(batch["index"].tolist(), batch["augmentation"].tolist()))
        todo = [i for i, key in enumerate(keys) if key not in self.entries]
        if todo:
            embeddings, early = encode_frozen(model, batch["image"][todo].to(device), precision)
            for j, i in enumerate(todo):
                self.entries[keys[i]] = (embeddings[j].cpu(), early[j].cpu())
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        embeddings, early = zip(*(self.entries[key] for key in keys))
        return torch.stack(embeddings).to(device), torch.stack(early).to(device)


def fit(config: TrainConfig, resume: bool = False) -> FitResult:
    """Train the HQ parts as the config says; returns where the results are. See the module docstring."""
    process = start_process(config.device, config.dist_timeout_min)
    per_process, accumulation = micro_batches(config.batch_size, config.batch_per_gpu, process.world)
    micro = per_process // accumulation
    torch.manual_seed(config.seed + process.rank)
    output = Path(config.output_dir)
    state_path = output / "checkpoints" / "last.pth"

    model = load_frozen_model(config, process.device)
    train_sources = build_sources(config, "train")
    val_sources = build_sources(config, "val") if config.val_every else []
    if process.main:
        for source in [*train_sources, *val_sources]:
            print(source.report)  # what each source holds and what it left out, by name
        print(f"training on {process.world} process{'es' if process.world > 1 else ''} ({process.device.type}): "
              f"global batch {config.batch_size}, {micro} per process in {accumulation} micro-step"
              f"{'s' if accumulation > 1 else ''} per step, precision {config.precision}, target {config.target}")
    train_source = ConcatDataset(train_sources)
    examples = TrainingExamples(
        train_source,
        image_size=model.image_encoder.img_size,
        mask_input_size=tuple(model.prompt_encoder.mask_input_size),
        seed=config.seed,
        scale_range=config.scale_range,
        flip_prob=config.flip_prob,
        prompt_kinds=config.prompt_kinds,
        num_points=config.num_points,
        augmentations=config.cache_augmentations if config.cache_embeddings else 0,
        target=config.target,
    )
    head = HQLogits(model)
    if process.world > 1:
        head = DistributedDataParallel(head, device_ids=[process.device.index] if process.device.type == "cuda" else None)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay,
    )
    cache = EmbeddingCache() if config.cache_embeddings else None

    epoch = step_in_epoch = global_step = 0
    if resume and state_path.exists():
        _check_resumable(config, output / "config.yaml")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["hq"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        if process.main:
            print(f"resuming from {state_path}: epoch {epoch}, step {step_in_epoch} of it, {global_step} steps done")
    elif process.main:
        output.mkdir(parents=True, exist_ok=True)
        save_config(config, output / "config.yaml")
    step_log = CsvLog(output / "steps.csv", truncate_after=("step", global_step)) if process.main else None
    epoch_log = CsvLog(output / "epochs.csv", truncate_after=("epoch", epoch - 1)) if process.main else None
    writer = _tensorboard(output) if process.main else None

    def save_state() -> None:
        if process.main:
            state = {"hq": hq_state(model), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     "step_in_epoch": step_in_epoch, "global_step": global_step}
            with atomic_write(state_path) as file:
                torch.save(state, file)

    started, summary, stop = time.perf_counter(), None, False
    while epoch < config.epochs and not stop:
        lr = config.lr * (0.1 if epoch >= config.lr_drop_epoch else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batches = epoch_batches(len(examples), config.batch_size, config.seed, epoch)
        if not batches:
            raise ValueError(f"{len(examples)} training samples are fewer than one batch of {config.batch_size}")
        shares = [batch[process.rank * per_process : (process.rank + 1) * per_process] for batch in batches]
        mine = [
            [(epoch, i) for i in share[k * micro : (k + 1) * micro]]
            for share in shares[step_in_epoch:]
            for k in range(accumulation)
        ]
        loader = DataLoader(examples, batch_sampler=mine, collate_fn=collate, num_workers=config.num_workers)
        bar = tqdm(
            total=len(batches), initial=step_in_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
            disable=not (config.progress and process.main), dynamic_ncols=True,
        )
        epoch_losses: List[float] = []
        tick = time.perf_counter()
        micro_stream = iter(loader)
        for step_batches in zip(*[micro_stream] * accumulation):  # `accumulation` consecutive micro-batches a step
            optimizer.zero_grad(set_to_none=True)
            values = torch.zeros(2, device=process.device)
            for k, batch in enumerate(step_batches):
                # DDP all-reduces the gradients once a step: after the last micro-batch's backward.
                with head.no_sync() if process.world > 1 and k < accumulation - 1 else nullcontext():
                    if cache is not None:
                        embeddings, early = cache.encode(model, batch, process.device, config.precision)
                    else:
                        embeddings, early = encode_frozen(model, batch["image"].to(process.device), config.precision)
                    logits = head(embeddings, early, embed_prompts(model, batch))
                    generators = [keyed_generator(config.seed, epoch, i, LOSS_STREAM) for i in batch["index"].tolist()]
                    # Per-sample losses over the process's share: summed over its micro-steps and averaged over
                    # the processes by DDP, the gradient is that of the global batch's mean loss.
                    bce, dice = mask_loss(
                        logits, batch["target"].to(process.device), generators, num_points=config.loss_points,
                        oversample_ratio=config.oversample_ratio, importance_ratio=config.importance_ratio,
                        num_masks=per_process,
                    )
                    (bce + dice).backward()
                values += torch.stack([bce.detach(), dice.detach()])
            optimizer.step()
            step_in_epoch += 1
            global_step += 1

            if process.world > 1:
                dist.all_reduce(values)
                values /= process.world
            bce_value, dice_value = values.tolist()
            epoch_losses.append(bce_value + dice_value)
            throughput = config.batch_size / (time.perf_counter() - tick)  # data loading included
            tick = time.perf_counter()
            if process.main:
                row = {"step": global_step, "epoch": epoch + 1, "loss": bce_value + dice_value, "bce": bce_value,
                       "dice": dice_value, "lr": lr, "samples_per_s": throughput}
                step_log.append(row)
                if writer is not None:
                    for key in ("loss", "bce", "dice", "lr", "samples_per_s"):
                        writer.add_scalar(f"train/{key}", row[key], global_step)
                bar.set_postfix(loss=f"{row['loss']:.3f}", samples_s=f"{throughput:.1f}")
            bar.update(1)
            if global_step % config.checkpoint_every == 0:
                save_state()
            if config.max_steps is not None and global_step >= config.max_steps:
                stop = True
                break
        bar.close()
        if stop and step_in_epoch < len(batches):
            save_state()
            break
        finished = epoch + 1
        if config.val_every and finished % config.val_every == 0 and val_sources:
            rows = evaluate_hq_datasets(
                model, val_sources, max_images=config.max_val_images, progress=config.progress and process.main,
                precision=config.precision, shard=(process.rank, process.world),
            )
            summary = summarize(rows)
            if process.main:
                rows.to_csv(output / f"val_epoch{finished}.csv", index=False)
                epoch_log.append({"epoch": finished, "train_loss": sum(epoch_losses) / max(len(epoch_losses), 1),
                                  **_flatten(summary)})
                print(f"epoch {finished}: " + ", ".join(
                    f"{m} mIoU {summary.loc[m, 'average mIoU']:.1f} mBIoU {summary.loc[m, 'average mBIoU']:.1f}"
                    for m in summary.index))
        elif process.main:
            epoch_log.append({"epoch": finished, "train_loss": sum(epoch_losses) / max(len(epoch_losses), 1)})
        epoch, step_in_epoch = finished, 0
        save_state()
        if process.world > 1:
            dist.barrier()

    exported = None
    if process.main:
        exported = save_state_dict(model.state_dict(), output / f"sam_hq_{config.model_type}.pth")
        if cache is not None:
            print(f"embedding cache: {cache.hits} hits, {cache.misses} encoder passes")
    if writer is not None:
        writer.close()
    return FitResult(output, exported, global_step, time.perf_counter() - started, summary)


def _flatten(summary: pd.DataFrame) -> Dict[str, float]:
    return {f"{model} {column}": float(summary.loc[model, column]) for model in summary.index for column in summary.columns}


def _tensorboard(output: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional; the CSV logs always exist
        return None
    return SummaryWriter(str(output / "tensorboard"))
