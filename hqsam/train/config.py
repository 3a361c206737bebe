"""Training configuration: one dataclass, two YAML recipes (`toy`, `paper`), command-line overrides.

The recipes hold the training settings; where a profile keeps its backbone, data, SAM checkpoint and outputs
comes from `hqsam.profiles`, for any of those five settings not given. The fields made with `recipe(...)` decide
what a run computes, so a resumed run must keep them (`recipe_changes`); the others (epochs, logging, devices, how
a batch is split over processes) may change between a run and its resumption.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from ..decoding import PRECISIONS
from ..profiles import PROFILES, get_profile
from .examples import TARGETS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
PROFILE_KEYS = ("model_type", "sam_checkpoint", "data_root", "layout", "output_dir")  # from hqsam.profiles if unset


def recipe(default: Any = dataclasses.MISSING, **options: Any) -> Any:
    """A TrainConfig field that is part of the recipe: `dataclasses.field` marked with metadata {"recipe": True}."""
    return field(default=default, metadata={"recipe": True}, **options)


@dataclass
class TrainConfig:
    profile: str = "toy"  # where the five settings below come from when not given (hqsam.profiles)
    model_type: Optional[str] = recipe(None)  # the backbone
    sam_checkpoint: Optional[str] = recipe(None)  # the frozen SAM (or an HQ-SAM checkpoint to fine-tune from)
    data_root: Optional[str] = None
    layout: Optional[str] = recipe(None)  # "toy" or "hqseg44k" (hqsam.data.layout.LAYOUTS)
    train_sources: Optional[List[str]] = recipe(None)  # names in the layout; None = every training source
    val_sources: Optional[List[str]] = None  # None = every validation source; [] = no validation
    extra_sources: List[Dict[str, Any]] = recipe(default_factory=list)  # {"folder": ..} or {"coco": ..}
    output_dir: Optional[str] = None
    epochs: int = 12
    lr: float = recipe(1e-3)
    lr_drop_epoch: int = 10  # lr x 0.1 from this epoch on
    betas: Tuple[float, float] = recipe((0.9, 0.999))
    eps: float = recipe(1e-8)
    weight_decay: float = recipe(0.0)
    batch_size: int = recipe(32)  # global: one optimiser step per batch_size samples, however many processes
    batch_per_gpu: Optional[int] = None  # samples per process per pass; None = batch_size / processes (no accumulation)
    scale_range: Tuple[float, float] = recipe((0.1, 2.0))
    flip_prob: float = recipe(0.5)
    prompt_kinds: Tuple[str, ...] = recipe(("box", "point", "noise_mask"))
    num_points: int = recipe(10)
    loss_points: int = recipe(112 * 112)
    oversample_ratio: float = recipe(3.0)
    importance_ratio: float = recipe(0.75)
    target: str = recipe("binary")  # the loss's GT: "binary" (GT > 128) or "soft" (grayscale / 255, as the release)
    precision: str = recipe("fp32")  # the frozen encoder's, in training and validation: "fp32" or "bf16" (autocast)
    seed: int = recipe(42)
    checkpoint_every: int = 500  # steps; a checkpoint is also written at the end of every epoch
    val_every: int = 1  # epochs; 0 = never
    max_val_images: Optional[int] = None  # per validation source
    cache_embeddings: bool = recipe(False)  # reuse the frozen encoder's outputs across epochs
    cache_augmentations: int = recipe(1)  # with the cache: distinct augmentations per image, cycled over epochs
    max_steps: Optional[int] = None  # stop after this many steps in all (quick runs and tests)
    num_workers: int = 0
    device: str = "auto"  # "auto": cuda if available (one GPU per process under torchrun), else cpu
    dist_timeout_min: float = 30.0  # how long a process waits for the others in a collective before failing
    progress: bool = True

    def __post_init__(self) -> None:
        missing = [key for key in PROFILE_KEYS if getattr(self, key) is None]
        if missing:  # a config that names all five needs no profile (e.g. a user's own backbone on the toy one)
            profile = get_profile(self.profile, model_type=self.model_type)
            defaults = {"model_type": profile.model_type, "sam_checkpoint": profile.sam_checkpoint,
                        "data_root": profile.data_root, "layout": profile.layout, "output_dir": profile.train_dir}
            for key in missing:
                setattr(self, key, str(defaults[key]))
        self.betas = tuple(self.betas)
        self.scale_range = tuple(self.scale_range)
        self.prompt_kinds = tuple(self.prompt_kinds)
        problems = []
        if self.layout not in ("toy", "hqseg44k"):
            problems.append(f"layout must be 'toy' or 'hqseg44k', got {self.layout!r}")
        unknown = set(self.prompt_kinds) - {"box", "point", "noise_mask"}
        if unknown or not self.prompt_kinds:
            problems.append(f"prompt_kinds must be a non-empty subset of box, point, noise_mask, got {self.prompt_kinds}")
        for name in ("epochs", "batch_size", "num_points", "loss_points", "cache_augmentations"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            problems.append(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if self.lr <= 0:
            problems.append(f"lr must be positive, got {self.lr}")
        if self.batch_per_gpu is not None and self.batch_per_gpu < 1:
            problems.append(f"batch_per_gpu must be at least 1 or null, got {self.batch_per_gpu}")
        if self.target not in TARGETS:
            problems.append(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.dist_timeout_min > 0:
            problems.append(f"dist_timeout_min must be positive, got {self.dist_timeout_min}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))


def recipe_changes(config: TrainConfig, saved: Union[str, Path]) -> List[str]:
    """The recipe fields, in the dataclass's order, whose value in `config` differs from the config.yaml at `saved`."""
    before = yaml.safe_load(Path(saved).read_text())
    return [
        spec.name for spec in dataclasses.fields(TrainConfig)
        if spec.metadata.get("recipe") and _plain(before.get(spec.name)) != _plain(getattr(config, spec.name))
    ]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value  # YAML reads tuples back as lists


def parse_assignments(pairs: Sequence[str], what: str, form: str, example: str) -> Dict[str, Any]:
    """`NAME=VALUE` strings as a dict, each value read as YAML (2 is an int, [a, b] a list, null is None); a
    ValueError names the first malformed one as `what`, with the `form` and an `example`."""
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"{what} {pair!r} must look like {form} (e.g. {example})")
        values[name.strip()] = yaml.safe_load(text)
    return values


def load_config(source: Union[str, Path] = "toy", overrides: Sequence[str] = ()) -> TrainConfig:
    """A profile name ("toy", "paper") or a YAML file, then `key=value` overrides (values parsed as YAML)."""
    path = CONFIG_DIR / f"{source}.yaml" if str(source) in PROFILES else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no config {source!r}: use a profile ({', '.join(PROFILES)}) or a YAML file path")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of config keys to values")
    values.update(parse_assignments(overrides, "override", "key=value", "epochs=2"))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown} in {path} or the overrides; known keys: {sorted(known)}")
    return TrainConfig(**values)


def save_config(config: TrainConfig, path: Union[str, Path]) -> None:
    values = dataclasses.asdict(config)
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    Path(path).write_text(yaml.safe_dump(values, sort_keys=False))
