"""Training configuration: one dataclass, two YAML recipes (`toy`, `paper`), command-line overrides.

The recipes hold the training settings; where a profile keeps its backbone, data, SAM checkpoint and outputs
comes from `hqsam.profiles`, for any of those five settings not given. The fields made with `recipe(...)` decide
what a run computes, so a resumed run must keep them (`recipe_changes`); the others (epochs, logging, devices, how
a batch is split over processes) may change between a run and its resumption.

Your own data (`own_data_only`: `train_sources: []` and `extra_sources`). Each extra source is a training source
(`split: train`, the default), or a validation one (`split: val`); a folder's `holdout: F` keeps the fraction F of
its pairs (chosen by stem, `hqsam.data.sources.held_out_stems`) out of training as the validation source NAME-val.
`val_sources` names validation sources among the layout's and the extra ones; unset, a config that trains on its own
data only and has its own validation validates on that alone, any other on the layout's and its own. A config that
trains on its own data only takes no model or outputs from the profile: `sam_checkpoint` must be set (a ValueError
says so), `model_type` unset is "auto", and `output_dir` defaults to runs/NAME/train, NAME the first extra source's;
the profile still gives `data_root` and `layout`, for `val_sources` that name layout sets. Any config's "auto"
`model_type` is read from `sam_checkpoint`'s weights (`hqsam.build.infer_model_type`) when the config is made.

`variant` chooses the model trained: HQ-SAM (the default) or one of the paper's ablations, `hqsam.modeling.VARIANTS`
(Table 3's feature sources of the HQ token's mask, Table 4's fine-tuning of SAM's decoder or output token); a
defaulted `output_dir` of another variant ends in -VARIANT (runs/toy/train-finetune_decoder).
"""

import dataclasses
import difflib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union, get_args, get_origin, get_type_hints

import yaml

from ..build import infer_model_type
from ..checkpoint import read_state_dict
from ..decoding import PRECISIONS
from ..download import REGISTRY
from ..modeling import DEFAULT_VARIANT, get_variant
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
    model_type: Optional[str] = recipe(None)  # the backbone; "auto": read from sam_checkpoint's weights
    sam_checkpoint: Optional[str] = recipe(None)  # the frozen SAM (or an HQ-SAM checkpoint to fine-tune from)
    variant: str = recipe(DEFAULT_VARIANT)  # the model trained: hq_sam or an ablation (hqsam.modeling.VARIANTS)
    data_root: Optional[str] = None
    layout: Optional[str] = recipe(None)  # "toy" or "hqseg44k" (hqsam.data.layout.LAYOUTS)
    train_sources: Optional[List[str]] = recipe(None)  # names in the layout; None = every training source
    val_sources: Optional[List[str]] = None  # layout's or extra; None = the default (module docstring); [] = none
    extra_sources: List[Dict[str, Any]] = recipe(default_factory=list)  # {type: folder|coco, ..., split, holdout}
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

    @property
    def own_data_only(self) -> bool:
        """Whether the config trains on its extra sources alone (`train_sources: []`; see the module docstring)."""
        return self.train_sources == [] and bool(self.extra_sources)

    def __post_init__(self) -> None:
        conform_field_types(self)
        self.output_dir_defaulted = self.output_dir is None  # not a field: a run of other settings moves out of it
        if self.own_data_only:  # the profile's SAM, backbone and outputs are no defaults for a user's data
            if self.sam_checkpoint is None:
                raise ValueError(
                    "sam_checkpoint is not set: a config that trains on its own data (train_sources: []) needs the "
                    f"SAM to train on, e.g. sam_checkpoint: checkpoints/{REGISTRY['sam_vit_b'].filename} (`hqsam "
                    "download sam_vit_b`)"
                )
            first = self.extra_sources[0]
            self.model_type = self.model_type or "auto"
            self.output_dir = self.output_dir or f"runs/{first.get('name', first.get('type'))}/train"
        missing = [key for key in PROFILE_KEYS if getattr(self, key) is None]
        if missing:  # a config that names all five needs no profile (e.g. a user's own backbone on the toy one)
            backbone = None if self.own_data_only or self.model_type == "auto" else self.model_type
            profile = get_profile(self.profile, model_type=backbone)
            defaults = {"model_type": profile.model_type, "sam_checkpoint": profile.sam_checkpoint,
                        "data_root": profile.data_root, "layout": profile.layout, "output_dir": profile.train_dir}
            for key in missing:
                setattr(self, key, str(defaults[key]))
        if self.output_dir_defaulted and self.variant != DEFAULT_VARIANT:
            self.output_dir = f"{self.output_dir}-{self.variant}"
        if self.model_type == "auto":
            self.model_type = infer_model_type(read_state_dict(self.sam_checkpoint), source=self.sam_checkpoint)
        self.betas = tuple(self.betas)
        self.scale_range = tuple(self.scale_range)
        self.prompt_kinds = tuple(self.prompt_kinds)
        problems = []
        if self.layout not in ("toy", "hqseg44k"):
            problems.append(f"layout must be 'toy' or 'hqseg44k', got {self.layout!r}")
        try:
            get_variant(self.variant)
        except ValueError as error:
            problems.append(str(error))
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


_NOUNS = {bool: ("a boolean", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings"), list: ("a list", "lists"), tuple: ("a list", "lists"),
          dict: ("a mapping", "mappings"), type(None): ("null", "nulls")}  # how errors name a type, one and many


def conform_field_types(config: TrainConfig) -> None:
    """Check every field of `config` against its annotation, converting where the reading is unambiguous: an int or
    a numeric string for a float (PyYAML reads `1e-3` as a string), a list for a tuple. A ValueError names every
    field of the wrong type, what it got and an example."""
    hints = get_type_hints(TrainConfig)
    problems = []
    for spec in dataclasses.fields(TrainConfig):
        value = getattr(config, spec.name)
        try:
            setattr(config, spec.name, _conform(value, hints[spec.name]))
        except TypeError:
            got = _NOUNS.get(type(value), (f"a {type(value).__name__}",))[0]
            problems.append(f"{spec.name} must be {_describe(hints[spec.name])}, got {value!r} ({got}){_example(spec)}")
    if problems:
        raise ValueError("invalid training config: " + "; ".join(problems))


def _conform(value: Any, annotation: Any) -> Any:
    """`value` as the type `annotation` (conform_field_types's conversions); TypeError if it is not one."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        for member in args:
            try:
                return _conform(value, member)
            except TypeError:
                pass
    elif origin in (list, tuple) and isinstance(value, (list, tuple)):
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) == len(args):
                return tuple(_conform(item, kind) for item, kind in zip(value, args))
        else:
            return origin(_conform(item, args[0] if args else Any) for item in value)
    elif origin is dict and isinstance(value, dict):
        key_kind, value_kind = args or (Any, Any)
        return {_conform(key, key_kind): _conform(item, value_kind) for key, item in value.items()}
    elif annotation is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is Any or isinstance(annotation, type) and isinstance(value, annotation):
        return value  # bool, str and every other class
    raise TypeError(annotation)


def _describe(annotation: Any, plural: bool = False) -> str:
    """How an error names the type `annotation`: "an integer or null", "a list of 2 numbers", "strings"."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(member, plural) for member in args)
    if origin in (list, tuple) and args:
        fixed = origin is tuple and args[-1] is not Ellipsis
        items = f"{len(args)} {_describe(args[0], True)}" if fixed else _describe(args[0], True)
        return f"{_NOUNS[list][plural]} of {items}"
    name = getattr(origin or annotation, "__name__", str(annotation))
    return _NOUNS.get(origin or annotation, (f"a {name}", f"{name} values"))[plural]


def _default(spec: "dataclasses.Field[Any]") -> Any:
    """The field's default; dataclasses.MISSING for a field without one."""
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def _example(spec: "dataclasses.Field[Any]") -> str:
    """": e.g. NAME=DEFAULT", the field's default written as an override would be; "" for a field without one."""
    default = _default(spec)
    if default is dataclasses.MISSING:
        return ""
    written = yaml.safe_dump(_plain(default), default_flow_style=True, width=1 << 30).splitlines()[0]
    return f": e.g. {spec.name}={written}"


def recipe_changes(config: TrainConfig, saved: Union[str, Path]) -> List[str]:
    """The recipe fields, in the dataclass's order, whose value in `config` differs from the config.yaml at `saved`
    (a field that config.yaml predates counts at its default)."""
    before = yaml.safe_load(Path(saved).read_text())
    return [
        spec.name for spec in dataclasses.fields(TrainConfig)
        if spec.metadata.get("recipe")
        and _plain(before.get(spec.name, _default(spec))) != _plain(getattr(config, spec.name))
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
        try:
            values[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", error)  # the gist, without the position in the value
            raise ValueError(f"{what} {pair!r} has a value that is not valid YAML ({problem}): quote it or fix it "
                             f"(e.g. {example})") from None
    return values


def _unknown_keys(keys: Iterable[Any], where: str) -> List[str]:
    """One phrase per key that is no TrainConfig field, found `where`: the closest field, or all without one."""
    known = [spec.name for spec in dataclasses.fields(TrainConfig)]
    phrases = []
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"the known keys are {', '.join(known)}"
            phrases.append(f"unknown config key {key!r} in {where}: {hint}")
    return phrases


def load_config(source: Union[str, Path] = "toy", overrides: Sequence[str] = ()) -> TrainConfig:
    """A profile name ("toy", "paper") or a YAML file, then `key=value` overrides (values parsed as YAML)."""
    path = CONFIG_DIR / f"{source}.yaml" if str(source) in PROFILES else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no config file {str(source)!r}: use a profile ({', '.join(PROFILES)}) or the path "
                                "of an existing YAML file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML ({error}): fix the file") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of config keys to values (e.g. `epochs: 2`)")
    assigned = parse_assignments(overrides, "override", "key=value", "epochs=2")
    unknown = _unknown_keys(values, str(path)) + _unknown_keys(assigned, "the overrides")
    if unknown:
        raise ValueError("; ".join(unknown))
    return TrainConfig(**{**values, **assigned})


def save_config(config: TrainConfig, path: Union[str, Path]) -> None:
    values = dataclasses.asdict(config)
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    Path(path).write_text(yaml.safe_dump(values, sort_keys=False))
