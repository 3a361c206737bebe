"""HQ-SAM in Hugging Face transformers' SamHQ format (a folder of config.json and model.safetensors), both ways.

The hub's SamHQ checkpoints (e.g. syscv-community/sam-hq-vit-base) hold the release's weights under transformers'
module names; `read_hf_checkpoint` renames them back key for key and `save_hf` writes a folder that
`transformers.SamHQModel.from_pretrained` loads with nothing missing or unexpected. Neither needs transformers:
the config is JSON, the weights safetensors. Only HQ-SAM's ViT backbones (vit_b, vit_l, vit_h, and the toy)
have a SamHQ counterpart; Light HQ-SAM's TinyViT and the paper's ablations do not.

The configs `save_hf` writes are the hub's but for one field: `mask_decoder_config.layer_norm_eps`, the LayerNorm
eps of transformers' two-way transformer, is 1e-5, SAM's (torch's default), so that transformers computes what
HQ-SAM does; the hub's configs have SamHQMaskDecoderConfig's default, 1e-6, with which transformers' mask logits
differ from HQ-SAM's by ~1e-4.
Reading ignores the eps fields: they change no weight.
"""

import json
import re
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch

from .build import MODEL_SPECS, ModelSpec, build_hqsam, infer_model_type
from .checkpoint import CheckpointError, check_state_dict, read_state_dict, save_state_dict
from .io import atomic_write
from .modeling import DEFAULT_VARIANT, HQSam, MaskDecoderHQ

PathLike = Union[str, Path]

CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE = "config.json", "model.safetensors", "model.safetensors.index.json"
HF_MODEL_TYPES = tuple(name for name, spec in MODEL_SPECS.items() if isinstance(spec, ModelSpec))  # the ViTs

# SamHQConfig's defaults for the fields that decide the architecture (a config written with only its differences
# from the defaults leaves them out); vision_config's mlp_dim defaults to mlp_ratio * hidden_size.
_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "vision_config": {
        "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "global_attn_indexes": [2, 5, 8, 11],
        "window_size": 14, "image_size": 1024, "patch_size": 16, "output_channels": 256, "num_pos_feats": 128,
        "num_channels": 3, "mlp_ratio": 4.0, "qkv_bias": True, "use_abs_pos": True, "use_rel_pos": True,
        "hidden_act": "gelu",
    },
    "prompt_encoder_config": {
        "hidden_size": 256, "image_size": 1024, "patch_size": 16, "mask_input_channels": 16,
        "num_point_embeddings": 4, "hidden_act": "gelu",
    },
    "mask_decoder_config": {
        "hidden_size": 256, "mlp_dim": 2048, "num_hidden_layers": 2, "num_attention_heads": 8,
        "attention_downsample_rate": 2, "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 256,
        "vit_dim": 768, "hidden_act": "relu",
    },
}
_SUB_MODEL_TYPES = {
    "vision_config": "sam_hq_vision_model", "prompt_encoder_config": "sam_hq_prompt_encoder",
    "mask_decoder_config": "sam_hq_mask_decoder",
}
# SAM's LayerNorm eps; the hub has 1e-6 for the mask decoder's too (see the module's docstring).
_LAYER_NORM_EPS = {"vision_config": 1e-6, "prompt_encoder_config": 1e-6, "mask_decoder_config": 1e-5}

# transformers ties the prompt encoder's copy of the positional encoding to the model's and saves the latter only.
_SHARED_KEY = "shared_image_embedding.positional_embedding"
_TIED_KEY = "prompt_encoder.shared_embedding.positional_embedding"
# (release name, transformers name) prefixes, the more specific first; {n} stands for a number.
_MLP_LAYERS = (("0", "proj_in"), ("1", "layers.0"), ("2", "proj_out"))  # SAM's and HQ-SAM's MLPs have 3 layers
_HQ_LAYERS = (("0", "conv1"), ("1", "norm"), ("3", "conv2"))
_RENAMES: Tuple[Tuple[str, str], ...] = (
    ("image_encoder.patch_embed.proj.", "vision_encoder.patch_embed.projection."),
    ("image_encoder.blocks.{n}.norm{n}.", "vision_encoder.layers.{n}.layer_norm{n}."),
    ("image_encoder.blocks.", "vision_encoder.layers."),
    ("image_encoder.neck.0.", "vision_encoder.neck.conv1."),
    ("image_encoder.neck.1.", "vision_encoder.neck.layer_norm1."),
    ("image_encoder.neck.2.", "vision_encoder.neck.conv2."),
    ("image_encoder.neck.3.", "vision_encoder.neck.layer_norm2."),
    ("image_encoder.", "vision_encoder."),
    ("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", _SHARED_KEY),
    ("prompt_encoder.point_embeddings.", "prompt_encoder.point_embed."),
    ("prompt_encoder.mask_downscaling.0.", "prompt_encoder.mask_embed.conv1."),
    ("prompt_encoder.mask_downscaling.1.", "prompt_encoder.mask_embed.layer_norm1."),
    ("prompt_encoder.mask_downscaling.3.", "prompt_encoder.mask_embed.conv2."),
    ("prompt_encoder.mask_downscaling.4.", "prompt_encoder.mask_embed.layer_norm2."),
    ("prompt_encoder.mask_downscaling.6.", "prompt_encoder.mask_embed.conv3."),
    ("mask_decoder.transformer.layers.{n}.norm{n}.", "mask_decoder.transformer.layers.{n}.layer_norm{n}."),
    ("mask_decoder.transformer.norm_final_attn.", "mask_decoder.transformer.layer_norm_final_attn."),
    ("mask_decoder.output_upscaling.0.", "mask_decoder.upscale_conv1."),
    ("mask_decoder.output_upscaling.1.", "mask_decoder.upscale_layer_norm."),
    ("mask_decoder.output_upscaling.3.", "mask_decoder.upscale_conv2."),
    ("mask_decoder.hf_token.", "mask_decoder.hq_token."),
    *(
        (f"mask_decoder.{ours}.{index}.", f"mask_decoder.{theirs}_{layer}.")
        for ours, theirs in (("compress_vit_feat", "compress_vit"), ("embedding_encoder", "encoder"),
                             ("embedding_maskfeature", "mask"))
        for index, layer in _HQ_LAYERS
    ),
    *(
        (f"mask_decoder.{ours}.layers.{index}.", f"mask_decoder.{theirs}.{layer}.")
        for ours, theirs in (("output_hypernetworks_mlps.{n}",) * 2, ("iou_prediction_head",) * 2,
                             ("hf_mlp", "hq_mask_mlp"))
        for index, layer in _MLP_LAYERS
    ),
)


def _compile(renames: Tuple[Tuple[str, str], ...]) -> Tuple[Tuple[re.Pattern, str], ...]:
    return tuple((re.compile(re.escape(source).replace(r"\{n\}", r"(\d+)")), target.replace("{n}", "{}"))
                 for source, target in renames)


_TO_HF = _compile(_RENAMES)
_FROM_HF = _compile(tuple((theirs, ours) for ours, theirs in _RENAMES))


def _rename(key: str, rules: Tuple[Tuple[re.Pattern, str], ...]) -> str:
    for pattern, target in rules:
        match = pattern.match(key)
        if match:
            return target.format(*match.groups()) + key[match.end():]
    return key  # the same name in both (e.g. the two-way transformer's attention layers)


def hf_config(model_type: str) -> Dict[str, Any]:
    """The config.json of a SamHQ model with the given backbone (vit_b, vit_l, vit_h as on the hub, or toy)."""
    if model_type not in HF_MODEL_TYPES:
        why = ("its encoder (Light HQ-SAM's TinyViT) has none in transformers' SamHQ, which has the ViT only"
               if model_type in MODEL_SPECS else "it is not a model type")
        raise ValueError(f"model type {model_type!r} has no Hugging Face SamHQ format: {why}; "
                         f"choose one of {', '.join(HF_MODEL_TYPES)}")
    spec = MODEL_SPECS[model_type]
    sizes = {
        "vision_config": {
            "hidden_size": spec.encoder_embed_dim, "num_hidden_layers": spec.encoder_depth,
            "num_attention_heads": spec.encoder_num_heads,
            "global_attn_indexes": list(spec.encoder_global_attn_indexes), "window_size": spec.window_size,
            "image_size": spec.image_size, "patch_size": spec.patch_size,
            "output_channels": spec.prompt_embed_dim, "num_pos_feats": spec.prompt_embed_dim // 2,
            "mlp_dim": 4 * spec.encoder_embed_dim,
        },
        "prompt_encoder_config": {
            "hidden_size": spec.prompt_embed_dim, "image_size": spec.image_size, "patch_size": spec.patch_size,
        },
        "mask_decoder_config": {
            "hidden_size": spec.prompt_embed_dim, "mlp_dim": spec.decoder_mlp_dim,
            "num_attention_heads": spec.decoder_num_heads, "iou_head_hidden_dim": spec.iou_head_hidden_dim,
            "vit_dim": spec.encoder_embed_dim,
        },
    }
    config: Dict[str, Any] = {"architectures": ["SamHQModel"], "model_type": "sam_hq"}
    for section, defaults in _DEFAULTS.items():
        config[section] = {**defaults, **sizes[section], "layer_norm_eps": _LAYER_NORM_EPS[section],
                           "model_type": _SUB_MODEL_TYPES[section]}
    return config


def _architecture(config: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The config's architecture fields, each section's defaults filled in."""
    sections = {section: config.get(section) or {} for section in _DEFAULTS}
    architecture = {section: {field: sections[section].get(field, default) for field, default in defaults.items()}
                    for section, defaults in _DEFAULTS.items()}
    vision = architecture["vision_config"]
    vision["mlp_dim"] = sections["vision_config"].get("mlp_dim") or int(vision["hidden_size"] * vision["mlp_ratio"])
    vision["global_attn_indexes"] = list(vision["global_attn_indexes"])
    return architecture


def hf_model_type(config: Dict[str, Any], source: str = "the config") -> str:
    """The model type (one of `HF_MODEL_TYPES`) whose SamHQ config has the architecture `config` describes."""
    if config.get("model_type") != "sam_hq":
        if config.get("model_type") == "sam":
            raise CheckpointError(
                f"{source} is a plain SAM in transformers' format (model_type 'sam'), not HQ-SAM: use a SamHQ "
                "checkpoint (e.g. syscv-community/sam-hq-vit-base), or Meta's sam_vit_*.pth with build_hqsam"
            )
        raise CheckpointError(f"{source} has model_type {config.get('model_type')!r}, not transformers' 'sam_hq': "
                              "it is not an HQ-SAM checkpoint in the Hugging Face format")
    found = _architecture(config)
    differences = {}
    for name in HF_MODEL_TYPES:
        expected = _architecture(hf_config(name))
        differences[name] = [
            f"{section}.{field} {found[section][field]!r} (not {value!r})"
            for section, fields in expected.items() for field, value in fields.items() if found[section][field] != value
        ]
        if not differences[name]:
            return name
    closest = min(differences, key=lambda name: len(differences[name]))
    raise CheckpointError(f"{source} describes a SamHQ model that is none of {', '.join(HF_MODEL_TYPES)}: the closest, "
                          f"{closest}, differs in {'; '.join(differences[closest][:4])}")


def _read_config(folder: Path) -> Dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder} is not a Hugging Face model folder (it has no {CONFIG_FILE}): pass the folder holding "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}, e.g. one made by save_hf or downloaded from the hub"
        )
    try:
        with open(path) as file:
            config = json.load(file)
    except ValueError as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}): download or write it again") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a JSON {type(config).__name__}, not a config object")
    return config


def _read_tensors(folder: Path) -> Dict[str, torch.Tensor]:
    """The folder's tensors: one model.safetensors, or the shards its index names."""
    if (folder / WEIGHTS_FILE).is_file():
        return read_state_dict(folder / WEIGHTS_FILE)
    index = folder / WEIGHTS_INDEX_FILE
    if not index.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE} (nor {WEIGHTS_INDEX_FILE} for sharded weights): only "
                              "safetensors weights are read; re-save the model with transformers' save_pretrained")
    try:
        with open(index) as file:
            shards = sorted(set(json.load(file)["weight_map"].values()))
    except (ValueError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{index} is not a safetensors index (JSON with a weight_map): download it "
                              "again") from error
    tensors: Dict[str, torch.Tensor] = {}
    for shard in shards:
        tensors.update(read_state_dict(folder / shard))
    return tensors


def read_hf_checkpoint(folder: PathLike) -> Tuple[str, Dict[str, torch.Tensor]]:
    """Read a SamHQ folder in transformers' format.

    Returns:
      str: the model type its config.json describes (`hf_model_type`).
      dict: its weights under the release's names (`build_hqsam`'s state dict keys), on the CPU.
    """
    folder = Path(folder)
    model_type = hf_model_type(_read_config(folder), source=str(folder / CONFIG_FILE))
    tensors = _read_tensors(folder)
    tied = tensors.pop(_TIED_KEY, None)
    if tied is not None:
        shared = tensors.setdefault(_SHARED_KEY, tied)
        if not torch.equal(shared, tied):
            raise CheckpointError(f"{folder} holds two different positional encodings, {_SHARED_KEY} and "
                                  f"{_TIED_KEY}, which transformers ties: it is not a SamHQ checkpoint as saved by it")
    return model_type, {_rename(key, _FROM_HF): value for key, value in tensors.items()}


def load_hf(folder: PathLike) -> HQSam:
    """HQ-SAM (`build_hqsam`) with the weights of a SamHQ folder in transformers' format, key for key.

    Raises CheckpointError for a folder that is not a complete SamHQ checkpoint of a known backbone: a plain SAM,
    another architecture, tensors missing, unexpected or of the wrong shape.
    """
    folder = Path(folder)
    model_type, state_dict = read_hf_checkpoint(folder)
    model = build_hqsam(model_type)
    fresh = check_state_dict(model, state_dict, model_type, source=str(folder))
    if fresh:
        raise CheckpointError(f"{folder} lacks the weights of {', '.join(fresh)}: it is not a complete SamHQ "
                              "checkpoint")
    model.load_state_dict(state_dict)
    model.checkpoint_path = folder / WEIGHTS_FILE if (folder / WEIGHTS_FILE).is_file() else None
    return model


def save_hf(model: HQSam, folder: PathLike) -> Path:
    """Write HQ-SAM as a SamHQ folder that `transformers.SamHQModel.from_pretrained(folder)` loads: config.json
    (`hf_config`) and model.safetensors, each written atomically. Returns the folder."""
    if not isinstance(model.mask_decoder, MaskDecoderHQ):
        raise ValueError("the model has plain SAM's mask decoder: transformers' SamHQ format holds HQ-SAM "
                         "(build_hqsam)")
    if model.mask_decoder.variant != DEFAULT_VARIANT:
        raise ValueError(f"the model is the ablation variant {model.mask_decoder.variant!r}: transformers' SamHQ "
                         f"holds HQ-SAM itself only (variant {DEFAULT_VARIANT!r})")
    state_dict = model.state_dict()
    config = hf_config(infer_model_type(state_dict, source="the model"))
    folder = Path(folder)
    save_state_dict({_rename(key, _TO_HF): value for key, value in state_dict.items()}, folder / WEIGHTS_FILE)
    with atomic_write(folder / CONFIG_FILE, "w") as file:
        json.dump(config, file, indent=2)
    return folder
