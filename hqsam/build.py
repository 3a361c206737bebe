"""Builders for HQ-SAM and plain SAM: ViT-B/L/H as released, and the `toy` backbone for CPU work."""

import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from .checkpoint import (
    HQ_MODULES, CheckpointError, check_state_dict, is_trained_parameter, pop_variant, read_state_dict,
)
from .modeling import DEFAULT_VARIANT, HQSam, MaskDecoderHQ, get_variant


@dataclass(frozen=True)
class ModelSpec:
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: Tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256


MODEL_SPECS: Dict[str, ModelSpec] = {
    "vit_b": ModelSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": ModelSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": ModelSpec(1280, 32, 16, (7, 15, 23, 31)),
    # Small enough to train on 2 CPU cores in minutes: 128 px input, 16 x 16 embedding, 64 x 64 masks. Patches
    # of 8 px keep the early feature about as rich per pixel as ViT-B's (192 values per patch into 96 channels,
    # against 768 into 768); 16 px patches at this width lost the fine detail HQ-SAM's fusion exists to use.
    "toy": ModelSpec(
        96, 4, 4, (1, 3), image_size=128, patch_size=8, window_size=4, prompt_embed_dim=128,
        decoder_mlp_dim=512, iou_head_hidden_dim=128,
    ),
}

PathLike = Union[str, Path]


def _spec(model_type: str) -> ModelSpec:
    if model_type not in MODEL_SPECS:
        raise ValueError(
            f"unknown model type {model_type!r}: choose one of {sorted(MODEL_SPECS)} "
            "(or 'auto' with a checkpoint to read the type from its weights)"
        )
    return MODEL_SPECS[model_type]


def infer_model_type(state_dict: Dict[str, torch.Tensor], source: str = "the checkpoint") -> str:
    """The model type whose encoder width and depth match the state dict's."""
    patch_key = "image_encoder.patch_embed.proj.weight"
    if patch_key not in state_dict:
        if any(key.startswith("image_encoder.layers.") for key in state_dict):
            raise CheckpointError(
                f"{source} holds a TinyViT encoder (Light HQ-SAM, sam_hq_vit_tiny): its encoder is not part of "
                "segment-anything and is not supported; use sam_hq_vit_b, _l or _h"
            )
        raise CheckpointError(
            f"{source} has no image-encoder weights ({len(state_dict)} tensors, e.g. {sorted(state_dict)[:3]}): "
            "it lacks SAM's weights. HQ-SAM needs a full SAM or HQ-SAM checkpoint; a file holding only the HQ "
            "parts must first be merged into the SAM checkpoint it was trained on"
        )
    width = state_dict[patch_key].shape[0]
    depth = 1 + max(int(key.split(".")[2]) for key in state_dict if key.startswith("image_encoder.blocks."))
    for name, spec in MODEL_SPECS.items():
        if (spec.encoder_embed_dim, spec.encoder_depth) == (width, depth):
            return name
    known = ", ".join(f"{n} ({s.encoder_embed_dim} wide, {s.encoder_depth} blocks)" for n, s in MODEL_SPECS.items())
    raise CheckpointError(f"{source} has an encoder {width} wide with {depth} blocks; known backbones: {known}")


def _encoder_and_prompt_encoder(spec: ModelSpec) -> Tuple[ImageEncoderViT, PromptEncoder]:
    embedding_size = spec.image_size // spec.patch_size
    image_encoder = ImageEncoderViT(
        depth=spec.encoder_depth,
        embed_dim=spec.encoder_embed_dim,
        img_size=spec.image_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=spec.encoder_num_heads,
        patch_size=spec.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=spec.encoder_global_attn_indexes,
        window_size=spec.window_size,
        out_chans=spec.prompt_embed_dim,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=spec.prompt_embed_dim,
        image_embedding_size=(embedding_size, embedding_size),
        input_image_size=(spec.image_size, spec.image_size),
        mask_in_chans=16,
    )
    return image_encoder, prompt_encoder


def _mask_decoder_args(spec: ModelSpec) -> Dict[str, object]:
    # SAM's mask decoder and HQ-SAM's (which adds vit_dim) are built alike, so SAM's decoder weights load into HQ-SAM.
    transformer = TwoWayTransformer(
        depth=2, embedding_dim=spec.prompt_embed_dim, mlp_dim=spec.decoder_mlp_dim, num_heads=spec.decoder_num_heads
    )
    return {
        "transformer_dim": spec.prompt_embed_dim, "transformer": transformer,
        "iou_head_hidden_dim": spec.iou_head_hidden_dim,
    }


def build_sam(model_type: str = "toy") -> Sam:
    """Meta's plain SAM with the given backbone and random weights (the toy SAM is trained from this)."""
    spec = _spec(model_type)
    image_encoder, prompt_encoder = _encoder_and_prompt_encoder(spec)
    return Sam(image_encoder, prompt_encoder, MaskDecoder(**_mask_decoder_args(spec))).eval()


def build_hqsam(model_type: str = "toy", checkpoint: Optional[PathLike] = None, variant: Optional[str] = None) -> HQSam:
    """Build HQ-SAM (or one of the paper's ablations), SAM frozen and what the variant trains trainable, in eval
    mode on the CPU.

    Arguments:
      model_type (str): "vit_b", "vit_l", "vit_h", "toy", or "auto" (read from the checkpoint's shapes).
      checkpoint (path or None): an HQ-SAM checkpoint (`sam_hq_vit_*.pth`, loads with nothing missing), a
        plain SAM checkpoint (`sam_vit_*.pth`, the HQ parts stay freshly initialised and a warning lists them),
        or the same as `.safetensors`. Any other mismatch raises `CheckpointError`.
      variant (str or None): one of `hqsam.modeling.VARIANTS`, the parameters it trains trainable instead of
        the HQ parts; None: the one the checkpoint records (`hqsam.checkpoint.pop_variant`), else HQ-SAM. A
        fine-tuning baseline's copy of SAM's decoder parts, when the checkpoint lacks it, starts as SAM's.
    """
    if model_type != "auto":
        _spec(model_type)  # an unknown type fails before a large file is read
    if variant is not None:
        get_variant(variant)
    state_dict = read_state_dict(checkpoint) if checkpoint is not None else None
    recorded = pop_variant(state_dict, str(checkpoint)) if state_dict is not None else None
    if variant is not None and recorded not in (None, variant):
        raise CheckpointError(f"{checkpoint} holds the variant {recorded!r} but variant={variant!r} was asked for: "
                              "leave variant unset to load it as it is")
    variant = variant or recorded or DEFAULT_VARIANT
    if state_dict is not None:
        found = infer_model_type(state_dict, source=str(checkpoint))
        if model_type not in ("auto", found):
            raise CheckpointError(
                f"{checkpoint} holds a {found} model but model_type={model_type!r} was asked for: "
                f"use model_type={found!r} or 'auto'"
            )
        model_type = found
    elif model_type == "auto":
        raise ValueError("model_type='auto' reads the model type from a checkpoint: pass checkpoint=PATH")
    spec = _spec(model_type)
    image_encoder, prompt_encoder = _encoder_and_prompt_encoder(spec)
    mask_decoder = MaskDecoderHQ(**_mask_decoder_args(spec), vit_dim=spec.encoder_embed_dim, variant=variant)
    model = HQSam(image_encoder, prompt_encoder, mask_decoder).eval()
    if state_dict is not None:
        fresh = check_state_dict(model, state_dict, model_type, source=str(checkpoint))
        fresh_hq = [module for module in fresh if module.split(".")[1] in HQ_MODULES]
        if fresh_hq and not get_variant(variant).finetunes:  # a baseline does not use the HQ parts
            remedy = ("`hqsam train --config toy` makes one" if model_type == "toy"
                      else f"e.g. `hqsam download sam_hq_{model_type}`")
            warnings.warn(
                f"{checkpoint} is a plain SAM checkpoint: the HQ parts ({', '.join(fresh_hq)}) are freshly "
                f"initialised and need training (or load an HQ-SAM checkpoint: {remedy})",
                stacklevel=2,
            )
        model.load_state_dict(state_dict, strict=not fresh)
        if "mask_decoder.finetuned" in fresh:
            mask_decoder.reset_finetuned()
    for name, parameter in model.named_parameters():
        parameter.requires_grad = is_trained_parameter(name, variant)
    model.checkpoint_path = Path(checkpoint) if checkpoint is not None else None  # what hqsam.provenance records
    return model


hqsam_model_registry = {name: partial(build_hqsam, name) for name in MODEL_SPECS}
