"""`fit(config)`: train HQ-SAM's added parts with SAM frozen, on one process or many (torchrun, DDP); or, with
`variant`, one of the paper's ablations (`hqsam.modeling.VARIANTS`: what it fuses and trains), the same way.

One readable loop: build the frozen model and the data, then for each step run the frozen encoder (no_grad,
fp32 or bf16 autocast: `precision`), embed the prompts, decode the HQ logits (a fine-tuning baseline's: SAM's
single mask from its fine-tuned decoder parts) for the whole batch, take the point-sampled BCE + Dice loss and
step Adam. The run's state (`TrainState`) is saved atomically every
`checkpoint_every` steps and at each epoch's end; `resume` continues from the latest state and ends with the same
weights as an uninterrupted run.

`fit` reads top to bottom: `start_run` builds what every step uses (`Run`), `restore_or_start` loads the saved
state or writes config.yaml; then per epoch `set_epoch_lr` and `epoch_loader`, per step `train_step` (logged to
steps.csv, checkpointed), and `end_epoch` (validation, epochs.csv, checkpoint); last, `export`.

`batch_size` is the global batch of one optimiser step. Each process takes a consecutive slice of it, in
micro-batches of `batch_per_gpu` samples whose gradients accumulate (DDP all-reduces after the last one only);
every per-sample loss is divided by the process's share, so the step equals one step on the whole global batch,
however it is split. Validation is split over the processes by chunks of images and gathered in one process's
order, so its files do not depend on the process count either.
"""

import dataclasses
import inspect
import os
import shutil
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm import tqdm

from .. import provenance
from ..build import build_hqsam
from ..checkpoint import checkpoint_state_dict, save_state_dict
from ..io import atomic_write
from ..data.layout import LAYOUTS
from ..data.sources import FolderSource, read_layout
from ..eval.hq_benchmark import evaluate_hq_datasets, summarize
from ..modeling import HQSam
from ..profiles import resolve_device
from ..seeding import keyed_generator
from .config import TrainConfig, recipe_changes, save_config
from .examples import LOSS_STREAM, TrainingExamples, collate, epoch_batches
from .head import HQLogits, embed_prompts, encode_frozen, hq_state
from .logs import CsvLog
from .loss import mask_loss


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
    checkpoint: Optional[Path]  # the exported checkpoint (release format, with an ablation's variant), main process
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
    """HQ-SAM of the config's variant from its SAM checkpoint (HQ parts fresh) or HQ-SAM checkpoint; SAM frozen."""
    if config.sam_checkpoint is None:
        raise ValueError("sam_checkpoint is not set: HQ-SAM trains on top of a SAM checkpoint (see the README)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*plain SAM checkpoint.*")  # fresh HQ parts are the point here
        model = build_hqsam(config.model_type, config.sam_checkpoint, config.variant)
    model.checkpoint_path = None  # its weights are trained from here: hqsam.provenance digests them, not the file
    return model.to(device)


def build_sources(config: TrainConfig, split: str) -> List[Dataset]:
    """The sources of one split: the layout's, filtered by `train_sources` / `val_sources`, then the extra sources'
    (`_extra_source`; for validation also filtered by `val_sources`). Unset `val_sources` in a config that trains on
    its own data only and has its own validation means that alone (the config module's docstring)."""
    own = [source for source in (_extra_source(entry, split) for entry in config.extra_sources) if source is not None]
    names = config.train_sources if split == "train" else config.val_sources
    if split == "val" and names is None and config.own_data_only and own:
        names = [source.name for source in own]
    specs = [spec for spec in LAYOUTS[config.layout] if spec.split == split]
    if names is not None:
        known = [spec.name for spec in specs] + ([source.name for source in own] if split == "val" else [])
        missing = [name for name in names if name not in known]
        if missing:
            raise ValueError(f"unknown {split} sources {missing} in layout {config.layout!r} and extra_sources; "
                             f"known: {known}")
        specs = [spec for spec in specs if spec.name in names]
        own = own if split == "train" else [source for source in own if source.name in names]
    sources: List[Dataset] = [*(read_layout(config.data_root, tuple(specs), split=split) if specs else []), *own]
    if split == "train" and not sources:
        raise ValueError("no training sources: check train_sources and extra_sources")
    return sources


def _extra_source(entry: Dict, split: str) -> Optional[Dataset]:
    """The source an `extra_sources` entry gives `split`, or None. An entry trains (`split: train`, the default)
    or validates (`split: val`); a training folder's `holdout` fraction validates as the source NAME-val."""
    from ..data.coco_source import CocoInstanceSource

    kinds = {"folder": FolderSource, "coco": CocoInstanceSource}
    if entry.get("type") not in kinds:
        raise ValueError(f"extra source {entry} needs type: folder (name, image_dir, mask_dir) or coco (image_dir, "
                         "annotation_file)")
    cls, arguments = kinds[entry["type"]], {key: value for key, value in entry.items() if key != "type"}
    own_split, holdout = arguments.get("split", "train"), arguments.get("holdout", 0)
    if own_split not in ("train", "val"):
        raise ValueError(f"extra source {entry}: split must be train or val, got {own_split!r}")
    if holdout and (cls is not FolderSource or own_split != "train"):
        raise ValueError(f"extra source {entry}: holdout is for folder sources that train (split: train); drop it")
    try:
        inspect.signature(cls).bind(**arguments)
    except TypeError as error:
        keys = ", ".join(inspect.signature(cls).parameters)
        raise ValueError(f"extra source {entry}: {error}; a {entry['type']} source takes {keys}") from None
    if own_split != split:
        if not holdout:
            return None
        arguments["name"] = f"{arguments['name']}-val"
    return cls(**{**arguments, "split": split})


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


@dataclass
class Run:
    """What a training run builds once and every step uses: the config, this process, the frozen model and its
    trainable path (`head`: HQLogits, wrapped in DistributedDataParallel on many processes), Adam over the
    parameters the variant trains, the training examples, the validation sources and the embedding cache (None
    when disabled)."""

    config: TrainConfig
    process: Process
    model: HQSam
    head: torch.nn.Module
    optimizer: torch.optim.Optimizer
    examples: TrainingExamples
    val_sources: List[Dataset]
    cache: Optional[EmbeddingCache]
    per_process: int  # samples of each global batch this process takes
    accumulation: int  # micro-batches of per_process / accumulation samples per step

    @property
    def micro(self) -> int:
        return self.per_process // self.accumulation

    @property
    def output(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def state_path(self) -> Path:
        return self.output / "checkpoints" / "last.pth"


@dataclass
class TrainState:
    """Where a run stands, which checkpoints/last.pth holds to continue it: the trained parameters (`hq_state`) and
    Adam's state (kept live in `model` and `optimizer`), the epochs finished, the steps done in the current epoch
    and in all. The learning rate is not saved: it follows from the epoch (`set_epoch_lr`)."""

    model: HQSam
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0

    def save(self, path: Path) -> None:
        """Atomically: a run killed while saving leaves the previous state whole."""
        state = {"hq": hq_state(self.model), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
                 "step_in_epoch": self.step_in_epoch, "global_step": self.global_step}
        with atomic_write(path) as file:
            torch.save(state, file)

    def load(self, path: Path) -> None:
        """Put a saved state's trained parameters, Adam state and counters into this one."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["hq"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]


class RunLogs:
    """The main process's records: steps.csv, epochs.csv and TensorBoard scalars (when TensorBoard is installed).
    Opened on a resumed run, the CSV files lose their rows past the saved state."""

    def __init__(self, output: Path, state: TrainState) -> None:
        self.steps = CsvLog(output / "steps.csv", truncate_after=("step", state.global_step))
        self.epochs = CsvLog(output / "epochs.csv", truncate_after=("epoch", state.epoch))  # rows are epochs finished
        self.writer = _tensorboard(output)

    def step(self, state: TrainState, bce: float, dice: float, lr: float, samples_per_s: float) -> None:
        """A row of steps.csv for the step just done (the global batch's loss terms)."""
        row = {"step": state.global_step, "epoch": state.epoch + 1, "loss": bce + dice, "bce": bce, "dice": dice,
               "lr": lr, "samples_per_s": samples_per_s}
        self.steps.append(row)
        if self.writer is not None:
            for key in ("loss", "bce", "dice", "lr", "samples_per_s"):
                self.writer.add_scalar(f"train/{key}", row[key], state.global_step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def fit(config: TrainConfig, resume: bool = False, force: bool = False) -> FitResult:
    """Train what the config's variant trains (HQ-SAM: the HQ parts); returns where the results are. See the module
    docstring.

    The run's provenance (`run_provenance`) decides its folder (`claim_output_dir`): `resume` continues a saved
    state only of the same recipe, SAM checkpoint and data; a folder holding a run of other settings is replaced
    only with `force`, else the run goes to a folder of its own (the profile's default folder) or fails."""
    run = start_run(config)
    state = TrainState(run.model, run.optimizer)
    made = run_provenance(run)
    restore_or_start(run, state, claim_output_dir(run, made, resume, force), made)
    logs = RunLogs(run.output, state) if run.process.main else None

    started, summary = time.perf_counter(), None
    stopped = config.max_steps is not None and state.global_step >= config.max_steps  # a resumed run may be done
    while state.epoch < config.epochs and not stopped:
        lr = set_epoch_lr(run.optimizer, config, state.epoch)
        steps_in_epoch, loader = epoch_loader(run, state)
        bar = tqdm(
            total=steps_in_epoch, initial=state.step_in_epoch, desc=f"epoch {state.epoch + 1}/{config.epochs}",
            unit="step", disable=not (config.progress and run.process.main), dynamic_ncols=True,
        )
        epoch_losses: List[float] = []
        tick = time.perf_counter()
        for step_batches in zip(*[iter(loader)] * run.accumulation):  # `accumulation` consecutive micro-batches a step
            bce, dice = train_step(run, step_batches, state.epoch)
            state.step_in_epoch += 1
            state.global_step += 1
            epoch_losses.append(bce + dice)
            throughput = config.batch_size / (time.perf_counter() - tick)  # data loading included
            tick = time.perf_counter()
            if logs is not None:
                logs.step(state, bce, dice, lr, throughput)
                bar.set_postfix(loss=f"{bce + dice:.3f}", samples_s=f"{throughput:.1f}")
            bar.update(1)
            if state.global_step % config.checkpoint_every == 0:
                save_checkpoint(run, state)
            stopped = config.max_steps is not None and state.global_step >= config.max_steps
            if stopped:
                break
        bar.close()
        if stopped and state.step_in_epoch < steps_in_epoch:
            save_checkpoint(run, state)  # stopped mid-epoch: a resumed run continues from this step
            break
        validation = end_epoch(run, state, logs, epoch_losses)
        summary = validation if validation is not None else summary

    exported = export(run) if run.process.main else None
    if logs is not None:
        logs.close()
    return FitResult(run.output, exported, state.global_step, time.perf_counter() - started, summary)


def start_run(config: TrainConfig) -> Run:
    """Join the processes and build the run. The global generator is seeded first (per process): the fresh HQ
    parts draw their initial weights from it."""
    process = start_process(config.device, config.dist_timeout_min)
    per_process, accumulation = micro_batches(config.batch_size, config.batch_per_gpu, process.world)
    torch.manual_seed(config.seed + process.rank)
    model = load_frozen_model(config, process.device)
    train_sources = build_sources(config, "train")
    val_sources = build_sources(config, "val") if config.val_every else []
    if process.main:
        for source in [*train_sources, *val_sources]:
            print(source.report)  # what each source holds and what it left out, by name
        micro = per_process // accumulation
        print(f"training on {process.world} process{'es' if process.world > 1 else ''} ({process.device.type}): "
              f"global batch {config.batch_size}, {micro} per process in {accumulation} micro-step"
              f"{'s' if accumulation > 1 else ''} per step, precision {config.precision}, target {config.target}, "
              f"variant {config.variant}")
    examples = TrainingExamples(
        ConcatDataset(train_sources),
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
        # finetune_decoder's IoU head and multimask MLPs get no gradient from the loss on the single mask.
        device_ids = [process.device.index] if process.device.type == "cuda" else None
        head = DistributedDataParallel(head, device_ids=device_ids,
                                       find_unused_parameters=model.mask_decoder.finetuned is not None)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay,
    )
    cache = EmbeddingCache() if config.cache_embeddings else None
    return Run(config, process, model, head, optimizer, examples, val_sources, cache, per_process, accumulation)


RUN_ONLY = ("profile", "data_root", "output_dir", "checkpoint_every", "num_workers", "device", "dist_timeout_min",
            "progress", "batch_per_gpu", "sam_checkpoint")  # fields that do not change what a run computes (the SAM's
# weights do: their SHA-256 is in the provenance's scope)
RUN_FILES = ("config.yaml", "steps.csv", "epochs.csv", "checkpoints", "tensorboard", provenance.FOLDER_FILE)


def run_provenance(run: Run) -> dict:
    """What the run computes from (`hqsam.provenance`): the frozen SAM checkpoint's SHA-256, the training and
    validation data, the precision and device type; its settings are the config less RUN_ONLY."""
    config = run.config
    sam = {"checkpoint": config.sam_checkpoint, "sha256": provenance.file_sha256(config.sam_checkpoint)}
    sources = [*run.examples.source.datasets, *run.val_sources]
    scope = {"sam": sam, "data": provenance.data_identity(sources), "precision": config.precision,
             "device": run.process.device.type}
    settings = {key: value for key, value in dataclasses.asdict(config).items() if key not in RUN_ONLY}
    return provenance.describe("training", scope, settings, __name__)


def claim_output_dir(run: Run, made: dict, resume: bool, force: bool) -> bool:
    """Decide where the run writes, before it writes anything; True when it resumes the saved state there.

    A folder without a run is taken. With `resume`, a saved state of the same recipe, SAM checkpoint, data,
    precision and device is continued (the schedule may change: more epochs), also one that other code made or
    without provenance (said on stdout), except with `force`, which wants the result of this code. Otherwise a
    folder holding a run of
    other provenance is cleared with `force` (its files named), moved from when the config did not set output_dir
    (the run goes to <folder>-<digest> beside the default folder, said on stdout), and else refused (ValueError)."""
    output, main = run.output, run.process.main
    saved = provenance.read_provenance(output) if (output / provenance.FOLDER_FILE).is_file() else None
    held = run.state_path.exists() or any(output.glob("sam_hq_*.pth"))
    if not held:
        return False
    if resume and run.state_path.exists():
        changed = _resume_changes(run, saved, made)
        code = provenance.differences(saved, made, ("code",))  # ["no provenance"] for a run of an older version
        if not changed and not (code and force):
            if code and main:
                print(f"resuming a run that other code made, or that has no provenance ({'; '.join(code[:3])})")
            return True
        if not force:
            raise ValueError(f"cannot resume {run.state_path}: {'; '.join(changed)} since it was saved; use the same "
                             "settings, another output_dir, or --force to start this folder over")
    changed = provenance.differences(saved, made)
    if not changed or force:
        if main:
            what = "these settings" if not changed else f"other settings ({'; '.join(changed[:3])})"
            print(f"{output} holds a run of {what}: starting it over" + ("" if changed else " (--resume continues it)"))
            _clear_run(output)
        if run.process.world > 1:
            dist.barrier()
        return False
    if not run.config.output_dir_defaulted:
        raise ValueError(f"{output} holds a training run of other settings ({'; '.join(changed[:3])}): pass --force "
                         "to replace it, --resume to continue it, or set output_dir to another folder")
    own = output.parent / f"{output.name}-{provenance.digest({k: made[k] for k in ('scope', 'settings')})[:8]}"
    if main:
        print(f"{output} holds a run of other settings ({'; '.join(changed[:3])}): this one goes to {own}")
    run.config.output_dir = str(own)
    return claim_output_dir(run, made, resume, force)


def _resume_changes(run: Run, saved: Optional[dict], made: dict) -> List[str]:
    """What stops a resume: recipe fields changed since config.yaml was written, or another SAM checkpoint, data,
    precision or device (from provenance.json, when the run has one)."""
    recipe = recipe_changes(run.config, run.output / "config.yaml")
    changed = [f"the recipe changed ({', '.join(recipe)})"] if recipe else []
    if saved is not None:
        scope = {key: value for key, value in saved["scope"].items() if key != "precision"}  # a recipe field
        changed += provenance.differences({"scope": scope}, {"scope": {k: made["scope"][k] for k in scope}}, ("scope",))
    return changed


def _clear_run(output: Path) -> None:
    """Remove a run's files from `output` (so a new run mixes with none of them), naming each."""
    for path in [*(output / name for name in RUN_FILES), *output.glob("val_epoch*.csv"), *output.glob("sam_hq_*.pth*")]:
        if path.exists():
            print(f"  removing {path}")
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def restore_or_start(run: Run, state: TrainState, resume: bool, made: dict) -> None:
    """With `resume` (`claim_output_dir` said so): load the saved state. Else the main process writes config.yaml.
    Either way the main process records the run's provenance in provenance.json."""
    if resume:
        state.load(run.state_path)
        if run.process.main:
            print(f"resuming from {run.state_path}: epoch {state.epoch}, step {state.step_in_epoch} of it, "
                  f"{state.global_step} steps done")
    elif run.process.main:
        run.output.mkdir(parents=True, exist_ok=True)
        save_config(run.config, run.output / "config.yaml")
    if run.process.main:
        provenance.write_provenance(run.output, made)


def set_epoch_lr(optimizer: torch.optim.Optimizer, config: TrainConfig, epoch: int) -> float:
    """Set the epoch's learning rate (`lr`, x 0.1 from `lr_drop_epoch` on) on every parameter group; return it."""
    lr = config.lr * (0.1 if epoch >= config.lr_drop_epoch else 1.0)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def epoch_loader(run: Run, state: TrainState) -> Tuple[int, DataLoader]:
    """The epoch's number of steps, and a loader of this process's micro-batches (of `run.micro` examples) for the
    steps not done yet, `run.accumulation` consecutive micro-batches a step."""
    config, rank = run.config, run.process.rank
    batches = epoch_batches(len(run.examples), config.batch_size, config.seed, state.epoch)
    if not batches:
        count = len(run.examples)
        fix = (f"set batch_size (e.g. batch_size={1 << (count.bit_length() - 1)}) and batch_per_gpu to fit, or add "
               "data" if count else "add data (the source reports above say what was left out)")
        raise ValueError(f"{count} training samples are fewer than one global batch of {config.batch_size}: {fix}")
    shares = [batch[rank * run.per_process : (rank + 1) * run.per_process] for batch in batches]
    mine = [
        [(state.epoch, i) for i in share[k * run.micro : (k + 1) * run.micro]]
        for share in shares[state.step_in_epoch :]
        for k in range(run.accumulation)
    ]
    loader = DataLoader(run.examples, batch_sampler=mine, collate_fn=collate, num_workers=config.num_workers)
    return len(batches), loader


def train_step(run: Run, step_batches: Sequence[Dict], epoch: int) -> Tuple[float, float]:
    """One Adam step on this process's micro-batches of a global batch; the global batch's (BCE, Dice), summed
    over the micro-batches and averaged over the processes."""
    run.optimizer.zero_grad(set_to_none=True)
    values = torch.zeros(2, device=run.process.device)
    for k, batch in enumerate(step_batches):
        # DDP all-reduces the gradients once a step: after the last micro-batch's backward.
        with run.head.no_sync() if run.process.world > 1 and k < run.accumulation - 1 else nullcontext():
            bce, dice = micro_batch_loss(run, batch, epoch)
            (bce + dice).backward()
        values += torch.stack([bce.detach(), dice.detach()])
    run.optimizer.step()
    if run.process.world > 1:
        dist.all_reduce(values)
        values /= run.process.world
    bce_value, dice_value = values.tolist()
    return bce_value, dice_value


def micro_batch_loss(run: Run, batch: Dict, epoch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """BCE and Dice (scalars) of the HQ logits (B x 1 x 4E x 4E) of one collated micro-batch of B examples."""
    config, device = run.config, run.process.device
    if run.cache is not None:
        embeddings, early = run.cache.encode(run.model, batch, device, config.precision)
    else:
        embeddings, early = encode_frozen(run.model, batch["image"].to(device), config.precision)
    logits = run.head(embeddings, early, embed_prompts(run.model, batch))
    generators = [keyed_generator(config.seed, epoch, i, LOSS_STREAM) for i in batch["index"].tolist()]
    # Per-sample losses over the process's share: summed over its micro-steps and averaged over the processes
    # by DDP, the gradient is that of the global batch's mean loss.
    return mask_loss(
        logits, batch["target"].to(device), generators, num_points=config.loss_points,
        oversample_ratio=config.oversample_ratio, importance_ratio=config.importance_ratio, num_masks=run.per_process,
    )


def save_checkpoint(run: Run, state: TrainState) -> None:
    """Save the state on the main process (every process holds the same one)."""
    if run.process.main:
        state.save(run.state_path)


def end_epoch(run: Run, state: TrainState, logs: Optional[RunLogs], losses: List[float]) -> Optional[pd.DataFrame]:
    """Validate if the epoch is due, add its row to epochs.csv, move the state to the next epoch and save it; the
    validation summary (`summarize`), or None."""
    finished = state.epoch + 1
    summary = validate(run, finished)
    if logs is not None:
        scores = _flatten(summary) if summary is not None else {}
        logs.epochs.append({"epoch": finished, "train_loss": sum(losses) / max(len(losses), 1), **scores})
        if summary is not None:
            print(f"epoch {finished}: " + ", ".join(
                f"{m} mIoU {summary.loc[m, 'average mIoU']:.1f} mBIoU {summary.loc[m, 'average mBIoU']:.1f}"
                for m in summary.index))
    state.epoch, state.step_in_epoch = finished, 0
    save_checkpoint(run, state)
    if run.process.world > 1:
        dist.barrier()
    return summary


def validate(run: Run, epoch: int) -> Optional[pd.DataFrame]:
    """If epoch `epoch` (1-based) is due for validation: SAM and HQ-SAM on the validation sources, split over the
    processes, per-image rows written to val_epoch<epoch>.csv by the main process; the summary table, else None."""
    config, process = run.config, run.process
    if not (config.val_every and epoch % config.val_every == 0 and run.val_sources):
        return None
    rows = evaluate_hq_datasets(
        run.model, run.val_sources, max_images=config.max_val_images, progress=config.progress and process.main,
        precision=config.precision, shard=(process.rank, process.world),
    )
    summary = summarize(rows)
    if process.main:
        rows.to_csv(run.output / f"val_epoch{epoch}.csv", index=False)
    return summary


def export(run: Run) -> Path:
    """The trained HQ-SAM in the release's checkpoint format, with the variant of an ablation recorded
    (`checkpoint_state_dict`): sam_hq_<model_type>.pth in the output folder."""
    path = run.output / f"sam_hq_{run.config.model_type}.pth"
    exported = save_state_dict(checkpoint_state_dict(run.model), path)
    provenance.write_provenance(exported, provenance.read_provenance(run.output))
    print(f"HQ-SAM checkpoint ({run.config.variant}): {exported} (SHA-256 {provenance.file_sha256(exported)[:16]})")
    if run.cache is not None:
        print(f"embedding cache: {run.cache.hits} hits, {run.cache.misses} encoder passes")
    return exported


def _flatten(summary: pd.DataFrame) -> Dict[str, float]:
    return {f"{model} {column}": float(summary.loc[model, column]) for model in summary.index for column in summary.columns}


def _tensorboard(output: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional; the CSV logs always exist
        return None
    return SummaryWriter(str(output / "tensorboard"))
