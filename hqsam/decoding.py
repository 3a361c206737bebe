"""The one way images and prompts become SAM's and HQ-SAM's masks outside training's loss.

`encode` runs the frozen image encoder once for a batch of images, for both models (float32, or bfloat16
autocast with precision "bf16"; the release runs float32). `decode` is the SAM + HQ-SAM pair: plain SAM's output
(`DecoderOutput.sam`, no HQ token in the transformer) and HQ-SAM's (`MaskDecoderHQ.forward`), each from its own
transformer pass over the same image embedding. A model of one of the paper's ablations (`hqsam.modeling.VARIANTS`)
gives its variant's output as "HQ-SAM" (a fine-tuning baseline's: SAM's mask from its fine-tuned decoder parts),
beside the frozen SAM's. `box_logits` serves many images with many boxes each, in the
predictor's frame (ResizeLongestSide, padding, logits upsampled to each image's size as SamPredictor does):
`HQSamPredictor.predict_batch`, COCO and the qualitative figures. The HQ benchmark, the robustness studies and
the speed measurement call `encode` and `decode` with their own prompts.
"""

from dataclasses import dataclass
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from .image import to_rgb_uint8
from .modeling import HQSam
from .prompts import check_boxes

MODELS = ("SAM", "HQ-SAM")
PRECISIONS = ("fp32", "bf16")
# Masks upsampled to the original size at a time: postprocess_masks first goes through S x S (1024 x 1024).
UPSAMPLE_CHUNK = 16


class Decoded(NamedTuple):
    """One model's output for B prompts: B x M x 4E x 4E low-res logits and B x M predicted IoUs (M = 1, or 3 for
    SAM with multimask output)."""

    logits: torch.Tensor
    iou: torch.Tensor


@dataclass(frozen=True)
class Encoded:
    """The encoder pass both models share: N x C x E x E embeddings, and the N x C/8 x 4E x 4E fused HQ features
    (`MaskDecoderHQ.hq_features`; None when only SAM is decoded)."""

    embeddings: torch.Tensor
    hq_features: Optional[torch.Tensor]


def check_models(models: Sequence[str]) -> Tuple[str, ...]:
    """`models` as a tuple of distinct names among MODELS; ValueError otherwise."""
    models = tuple(models)
    if not models or any(name not in MODELS for name in models) or len(set(models)) != len(models):
        raise ValueError(f"models must be distinct names among {MODELS}, got {models}")
    return models


def encode_pixels(model: HQSam, pixels: torch.Tensor, precision: str = "fp32") -> Tuple[torch.Tensor, torch.Tensor]:
    """The frozen image encoder on N x 3 x S x S preprocessed pixels (`model.preprocess`): N x C x E x E
    embeddings and N x E x E x vit_dim early features, float32. "fp32" runs it as it is; "bf16" under bfloat16
    autocast on the pixels' device (CPU included), the outputs cast back."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        embeddings, early = model.encode_image(pixels)
    return embeddings.float(), early.float()


def encode(model: HQSam, pixels: torch.Tensor, precision: str = "fp32", hq: bool = True) -> Encoded:
    """`encode_pixels`, plus the fused HQ features when `hq` (HQ-SAM is to be decoded). Callers run it without
    autograd."""
    embeddings, early = encode_pixels(model, pixels, precision)
    return Encoded(embeddings, model.mask_decoder.hq_features(embeddings, early) if hq else None)


def decode(
    model: HQSam,
    encoded: Encoded,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    image_index: Optional[torch.Tensor] = None,
    models: Sequence[str] = MODELS,
    hq_token_only: bool = True,
    multimask_output: bool = False,
) -> Dict[str, Decoded]:
    """Each model's masks for B prompts (sparse B x T x C, dense B x C x E x E prompt embeddings); `image_index`
    as in `MaskDecoderHQ.forward`. HQ-SAM's mask is the HQ mask alone with `hq_token_only`, SAM's plus the HQ mask
    otherwise (a fine-tuning baseline's: SAM's mask from its fine-tuned decoder parts either way)."""
    decoder, image_pe = model.mask_decoder, model.prompt_encoder.get_dense_pe()
    decoded = {}
    for name in check_models(models):
        if name == "SAM":
            output = decoder.predict_masks_hq(encoded.embeddings, image_pe, sparse, dense, None, image_index)
            decoded[name] = Decoded(*output.sam(multimask_output))
            continue
        if encoded.hq_features is None:
            raise ValueError("HQ-SAM is to be decoded but the images were encoded without HQ features (hq=False)")
        decoded[name] = Decoded(*decoder(encoded.embeddings, image_pe, sparse, dense, multimask_output, hq_token_only,
                                         encoded.hq_features, image_index))
    return decoded


@dataclass(frozen=True)
class BoxLogits:
    """One image's K boxes decoded: per model, K x M x 4E x 4E low-res logits and K x M IoUs (`decoded`), with the
    image's size after ResizeLongestSide (`input_size`) and its own (`original_size`), both (H, W)."""

    decoded: Dict[str, Decoded]
    input_size: Tuple[int, int]
    original_size: Tuple[int, int]

    def upsampled(self, model: HQSam, name: str) -> torch.Tensor:
        """K x M x H x W float32 logits of `name` at the image's own size, as SamPredictor upsamples them."""
        low_res = self.decoded[name].logits.float()
        if len(low_res) == 0:
            return low_res.new_zeros((0, low_res.shape[1], *self.original_size))
        return torch.cat(
            [model.postprocess_masks(part, self.input_size, self.original_size) for part in low_res.split(UPSAMPLE_CHUNK)]
        )


@torch.no_grad()
def box_logits(
    model: HQSam,
    images: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    models: Sequence[str] = MODELS,
    hq_token_only: bool = False,
    multimask_output: bool = False,
    images_per_pass: int = 4,
    precision: str = "fp32",
    image_format: str = "RGB",
) -> Iterator[BoxLogits]:
    """SAM's and/or HQ-SAM's outputs for many boxes per image, in the predictor's frame.

    Arguments:
      images: H_i x W_i x C images (uint8 RGB; other layouts and dtypes as `hqsam.image.to_rgb_uint8`).
      boxes: per image a K_i x 4 array of x0, y0, x1, y1 boxes in pixels (checked, and clipped to the image, by
        `hqsam.prompts.check_boxes`).
      models: which of "SAM" and "HQ-SAM" to decode.
      hq_token_only (bool): HQ-SAM's mask is the HQ mask alone if True, SAM's plus the HQ mask if False.
      images_per_pass (int): images encoded together; the decoder runs once per image and model, for all of
        that image's boxes.
      precision (str): the image encoder's, "fp32" or "bf16" (see `encode_pixels`).

    Yields:
      One `BoxLogits` per image, in order.
    """
    models = check_models(models)
    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} images but {len(boxes)} box arrays: give one K x 4 array per image")
    if images_per_pass < 1:
        raise ValueError(f"images_per_pass must be at least 1, got {images_per_pass}")
    transform = ResizeLongestSide(model.image_encoder.img_size)
    device, low_res_size = model.device, tuple(model.prompt_encoder.mask_input_size)
    for start in range(0, len(images), images_per_pass):
        chunk = [to_rgb_uint8(image, image_format) for image in images[start : start + images_per_pass]]
        chunk_boxes = [check_boxes(b, image.shape[:2]) for b, image in zip(boxes[start : start + images_per_pass], chunk)]
        inputs = [torch.as_tensor(transform.apply_image(image), device=device).permute(2, 0, 1) for image in chunk]
        encoded = encode(model, torch.stack([model.preprocess(x) for x in inputs]), precision, hq="HQ-SAM" in models)
        for i, (image, pixel_boxes) in enumerate(zip(chunk, chunk_boxes)):
            original_size, input_size = tuple(image.shape[:2]), tuple(inputs[i].shape[-2:])
            if len(pixel_boxes) == 0:
                masks_per_box = {name: 3 if multimask_output and name == "SAM" else 1 for name in models}
                decoded = {name: Decoded(torch.zeros((0, m, *low_res_size), device=device), torch.zeros((0, m), device=device))
                           for name, m in masks_per_box.items()}
                yield BoxLogits(decoded, input_size, original_size)
                continue
            model_boxes = torch.as_tensor(transform.apply_boxes(pixel_boxes, original_size), dtype=torch.float,
                                          device=device)
            sparse, dense = model.prompt_encoder(points=None, boxes=model_boxes, masks=None)
            one_image = Encoded(encoded.embeddings[i : i + 1],
                                None if encoded.hq_features is None else encoded.hq_features[i : i + 1])
            decoded = decode(model, one_image, sparse, dense, None, models, hq_token_only, multimask_output)
            yield BoxLogits(decoded, input_size, original_size)


def predict_box_masks(
    model: HQSam,
    images: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    hq_token_only: bool = False,
    models: Sequence[str] = MODELS,
    images_per_pass: int = 4,
    precision: str = "fp32",
) -> List[Dict[str, np.ndarray]]:
    """Per image, model name -> K x H x W bool single-mask-output masks (logits > the model's threshold), the masks
    of `HQSamPredictor.predict(box=..., multimask_output=False)` and `predict_sam(...)`; arguments as `box_logits`."""
    return [
        {name: (result.upsampled(model, name)[:, 0] > model.mask_threshold).cpu().numpy() for name in result.decoded}
        for result in box_logits(model, images, boxes, models, hq_token_only, images_per_pass=images_per_pass,
                                 precision=precision)
    ]
