"""Builders for HQ-SAM and plain SAM: ViT-B/L/H and Light HQ-SAM's TinyViT (vit_tiny) as released, and the
`toy` backbone for CPU work."""

import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from .checkpoint import (
    HQ_MODULES, CheckpointError, check_state_dict, is_trained_parameter, pop_variant, read_state_dict,
)
from .modeling import DEFAULT_VARIANT, HQSam, MaskDecoderHQ, get_variant


@dataclass(frozen=True, kw_only=True)
class SamSpec:
    """What every backbone's spec holds besides its image encoder's: the input size, SAM's prompt encoder and
    mask decoder."""

    image_size: int = 1024
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class ModelSpec(SamSpec):
    """A backbone with Meta's ViT image encoder (ImageEncoderViT)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: Tuple[int, ...]
    patch_size: int = 16
    window_size: int = 14

    @property
    def embedding_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def early_dim(self) -> int:
        """Channels of the early feature (MaskDecoderHQ's vit_dim): every block's width."""
        return self.encoder_embed_dim

    @property
    def encoder_shape(self) -> Tuple[int, Tuple[int, ...]]:
        """(patch embedding width, blocks per stage): what `infer_model_type` reads from a state dict."""
        return self.encoder_embed_dim, (self.encoder_depth,)


@dataclass(frozen=True)
class TinyViTSpec(SamSpec):
    """A backbone with MobileSAM's TinyViT image encoder (`hqsam.modeling.tiny_vit`): per stage (four) its width,
    blocks, attention heads and window size. The authors' class fixes 1024 px input and a 256 x 64 x 64 embedding."""

    embed_dims: Tuple[int, ...]
    depths: Tuple[int, ...]
    num_heads: Tuple[int, ...]
    window_sizes: Tuple[int, ...]

    @property
    def embedding_size(self) -> int:
        return self.image_size // 16

    @property
    def early_dim(self) -> int:
        """Channels of the early feature (MaskDecoderHQ's vit_dim): the second stage's output, merged to the
        third stage's width."""
        return self.embed_dims[2]

    @property
    def encoder_shape(self) -> Tuple[int, Tuple[int, ...]]:
        """(patch embedding width, blocks per stage): what `infer_model_type` reads from a state dict."""
        return self.embed_dims[0], self.depths


MODEL_SPECS: Dict[str, SamSpec] = {
    "vit_b": ModelSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": ModelSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": ModelSpec(1280, 32, 16, (7, 15, 23, 31)),
    # Light HQ-SAM: MobileSAM's TinyViT-5M (`mobile_sam.pt`) as its frozen SAM.
    "vit_tiny": TinyViTSpec((64, 128, 160, 320), (2, 2, 6, 2), (2, 4, 5, 10), (7, 7, 14, 7)),
    # Small enough to train on 2 CPU cores in minutes: 128 px input, 16 x 16 embedding, 64 x 64 masks. Patches
    # of 8 px keep the early feature about as rich per pixel as ViT-B's (192 values per patch into 96 channels,
    # against 768 into 768); 16 px patches at this width lost the fine detail HQ-SAM's fusion exists to use.
    "toy": ModelSpec(
        96, 4, 4, (1, 3), image_size=128, patch_size=8, window_size=4, prompt_embed_dim=128,
        decoder_mlp_dim=512, iou_head_hidden_dim=128,
    ),
}

PathLike = Union[str, Path]


def _spec(model_type: str) -> SamSpec:
    if model_type not in MODEL_SPECS:
        raise ValueError(
            f"unknown model type {model_type!r}: choose one of {sorted(MODEL_SPECS)} "
            "(or 'auto' with a checkpoint to read the type from its weights)"
        )
    return MODEL_SPECS[model_type]


def _blocks(state_dict: Dict[str, torch.Tensor], prefix: str) -> int:
    """How many blocks `prefix` + "<index>." numbers in the state dict."""
    indices = [int(key[len(prefix):].split(".")[0]) for key in state_dict if key.startswith(prefix)]
    return 1 + max(indices, default=-1)


def _encoder_shape(state_dict: Dict[str, torch.Tensor]) -> Optional[Tuple[int, Tuple[int, ...]]]:
    """The image encoder's (patch embedding width, blocks per stage), a ViT's one stage or TinyViT's stages
    (`image_encoder.layers.*`); None for a state dict without encoder weights."""
    vit, tiny_vit = "image_encoder.patch_embed.proj.weight", "image_encoder.patch_embed.seq.2.c.weight"
    if vit in state_dict:
        return state_dict[vit].shape[0], (_blocks(state_dict, "image_encoder.blocks."),)
    if tiny_vit in state_dict:
        stages = _blocks(state_dict, "image_encoder.layers.")
        return state_dict[tiny_vit].shape[0], tuple(
            _blocks(state_dict, f"image_encoder.layers.{stage}.blocks.") for stage in range(stages)
        )
    return None


def infer_model_type(state_dict: Dict[str, torch.Tensor], source: str = "the checkpoint") -> str:
    """The model type whose encoder (`encoder_shape`: width, blocks per stage) matches the state dict's."""
    shape = _encoder_shape(state_dict)
    if shape is None:
        raise CheckpointError(
            f"{source} has no image-encoder weights ({len(state_dict)} tensors, e.g. {sorted(state_dict)[:3]}): "
            "it lacks SAM's weights. HQ-SAM needs a full SAM or HQ-SAM checkpoint; a file holding only the HQ "
            "parts must first be merged into the SAM checkpoint it was trained on"
        )
    for name, spec in MODEL_SPECS.items():
        if spec.encoder_shape == shape:
            return name

    def described(width: int, depths: Tuple[int, ...]) -> str:
        return f"{width} wide with {'+'.join(map(str, depths))} blocks"

    known = ", ".join(f"{name} ({described(*spec.encoder_shape)})" for name, spec in MODEL_SPECS.items())
    raise CheckpointError(f"{source} has an encoder {described(*shape)}; known backbones: {known}")


def _encoder_and_prompt_encoder(spec: SamSpec) -> Tuple[nn.Module, PromptEncoder]:
    if isinstance(spec, TinyViTSpec):
        from .modeling.tiny_vit import TinyViTEncoder  # imports segment_anything_hq and timm: only when needed

        image_encoder = TinyViTEncoder(spec.image_size, spec.embed_dims, spec.depths, spec.num_heads, spec.window_sizes)
    else:
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
        image_embedding_size=(spec.embedding_size, spec.embedding_size),
        input_image_size=(spec.image_size, spec.image_size),
        mask_in_chans=16,
    )
    return image_encoder, prompt_encoder


def _mask_decoder_args(spec: SamSpec) -> Dict[str, object]:
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
      model_type (str): "vit_b", "vit_l", "vit_h", "vit_tiny" (Light HQ-SAM), "toy", or "auto" (read from the
        checkpoint's shapes).
      checkpoint (path or None): an HQ-SAM checkpoint (`sam_hq_vit_*.pth`, loads with nothing missing), a
        plain SAM checkpoint (`sam_vit_*.pth`, MobileSAM's `mobile_sam.pt` for vit_tiny: the HQ parts stay
        freshly initialised and a warning lists them), or the same as `.safetensors`. Any other mismatch raises
        `CheckpointError`.
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
    mask_decoder = MaskDecoderHQ(**_mask_decoder_args(spec), vit_dim=spec.early_dim, variant=variant)
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
