"""HQ-SAM: Meta's Sam with the HQ mask decoder and capture of the early encoder feature."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from segment_anything.modeling import ImageEncoderViT, PromptEncoder, Sam
from torch import nn

from .mask_decoder_hq import MaskDecoderHQ


def first_global_attention_block(image_encoder: ImageEncoderViT) -> int:
    """Index of the first block with global attention (window size 0): 2 for ViT-B, 5 for ViT-L, 7 for ViT-H."""
    for index, block in enumerate(image_encoder.blocks):
        if block.window_size == 0:
            return index
    raise ValueError("the image encoder has no global-attention block, so HQ-SAM has no early feature to fuse")


def early_feature_module(image_encoder: nn.Module) -> nn.Module:
    """The module whose output is HQ-SAM's early feature: the encoder's `early_layer` where it names one
    (TinyViT's second stage, `hqsam.modeling.tiny_vit`), else a ViT's first global-attention block."""
    if hasattr(image_encoder, "early_layer"):
        return image_encoder.early_layer
    return image_encoder.blocks[first_global_attention_block(image_encoder)]


class HQSam(Sam):
    mask_decoder: MaskDecoderHQ
    checkpoint_path: Optional[Path] = None  # the file the weights were loaded from (hqsam.build_hqsam)

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoderHQ,
        pixel_mean: List[float] = [123.675, 116.28, 103.53],
        pixel_std: List[float] = [58.395, 57.12, 57.375],
    ) -> None:
        """Meta's Sam (see there) with an image encoder that has an early feature (`early_feature_module`): Meta's
        ImageEncoderViT or `hqsam.modeling.tiny_vit.TinyViTEncoder`."""
        super().__init__(image_encoder, prompt_encoder, mask_decoder, pixel_mean, pixel_std)
        early_feature_module(image_encoder)  # an encoder without one fails here, not at the first image

    def encode_image(self, input_images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run the image encoder once and keep the early feature on the way.

        Arguments:
          input_images (torch.Tensor): N x 3 x S x S, already preprocessed.

        Returns:
          torch.Tensor: N x C x H x W image embeddings (H = W = S/16 for the released backbones).
          torch.Tensor: N x H x W x vit_dim output of `early_feature_module` (a ViT's first global-attention
            block, TinyViT's second stage).
        """
        captured: List[torch.Tensor] = []
        early = early_feature_module(self.image_encoder)
        handle = early.register_forward_hook(lambda module, inputs, output: captured.append(output))
        try:
            embeddings = self.image_encoder(input_images)
        finally:
            handle.remove()
        n, _, h, w = embeddings.shape  # a ViT block's output is N x H x W x C already, TinyViT's stage's N x HW x C
        return embeddings, captured[0].reshape(n, h, w, -1)

    @torch.no_grad()
    def forward(
        self,
        batched_input: List[Dict[str, Any]],
        multimask_output: bool,
        hq_token_only: bool = False,
    ) -> List[Dict[str, torch.Tensor]]:
        """Meta's `Sam.forward` contract (see there for the keys of `batched_input` and of the outputs),
        with HQ-SAM's masks: one per prompt, as `MaskDecoderHQ.forward` explains."""
        input_images = torch.stack([self.preprocess(x["image"]) for x in batched_input], dim=0)
        image_embeddings, early_features = self.encode_image(input_images)
        hq_features = self.mask_decoder.hq_features(image_embeddings, early_features)

        outputs = []
        for i, record in enumerate(batched_input):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            sparse, dense = self.prompt_encoder(
                points=points, boxes=record.get("boxes"), masks=record.get("mask_inputs")
            )
            low_res_masks, iou_predictions = self.mask_decoder(
                image_embeddings=image_embeddings[i : i + 1],
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
                hq_token_only=hq_token_only,
                hq_features=hq_features[i : i + 1],
            )
            masks = self.postprocess_masks(low_res_masks, record["image"].shape[-2:], record["original_size"])
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou_predictions,
                    "low_res_logits": low_res_masks,
                }
            )
        return outputs
