"""HQ-SAM's mask decoder: Meta's MaskDecoder plus the HQ output token and the global-local fusion.

The parameter names (`hf_token`, `hf_mlp`, `compress_vit_feat`, `embedding_encoder`, `embedding_maskfeature`)
are the authors' release names, so released checkpoints load key for key. The decoder carries its variant
(`hqsam.modeling.variants`): HQ-SAM, one of the paper's feature ablations (every HQ module present, those the
variant does not fuse unused) or a fine-tuning baseline (with its copy of SAM's decoder parts, `finetuned`).
"""

import copy
from dataclasses import dataclass
from functools import reduce
from typing import Optional, Tuple, Type

import torch
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP, MaskDecoder
from torch import nn

from .variants import DEFAULT_VARIANT, SAM_DECODER_MODULES, get_variant


class MaskDecoderHQ(MaskDecoder):
    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        vit_dim: int,
        num_multimask_outputs: int = 3,
        activation: Type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        variant: str = DEFAULT_VARIANT,
    ) -> None:
        """SAM's decoder (see MaskDecoder) with HQ-SAM's additions.

        Arguments:
          vit_dim (int): channel width of the image encoder's blocks (the early ViT feature).
          variant (str): the model's variant (`hqsam.modeling.VARIANTS`), which decides what the variant's pass
            (`predict_masks_hq` with `hq_features`) computes.
        """
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            num_multimask_outputs=num_multimask_outputs,
            activation=activation,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        self.hf_token = nn.Embedding(1, transformer_dim)
        self.hf_mlp = MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(vit_dim, transformer_dim, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 8, kernel_size=2, stride=2),
        )
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
        )
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(transformer_dim // 8, transformer_dim // 4, 3, 1, 1),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.Conv2d(transformer_dim // 4, transformer_dim // 8, 3, 1, 1),
        )
        spec = get_variant(variant)
        self.variant, self.fuses = variant, spec.fuses
        self.finetuned: Optional[MaskDecoder] = None
        if spec.finetunes:
            self.finetuned = MaskDecoder(
                transformer_dim=transformer_dim,
                transformer=copy.deepcopy(transformer),
                num_multimask_outputs=num_multimask_outputs,
                activation=activation,
                iou_head_depth=iou_head_depth,
                iou_head_hidden_dim=iou_head_hidden_dim,
            )
            self.reset_finetuned()

    def reset_finetuned(self) -> None:
        """Start a baseline's fine-tuned copy (`finetuned`) from SAM's own decoder weights."""
        sam = {key: value for key, value in self.state_dict().items() if key.split(".")[0] in SAM_DECODER_MODULES}
        self.finetuned.load_state_dict(sam)

    def hq_features(self, image_embeddings: torch.Tensor, early_features: torch.Tensor) -> torch.Tensor:
        """Global-local fusion of the encoder features the variant fuses, once per image.

        Arguments:
          image_embeddings (torch.Tensor): N x C x H x W, the final encoder embedding.
          early_features (torch.Tensor): N x H x W x vit_dim, the early encoder feature, channels last
            (`early_feature_module`: a ViT's first global-attention block, TinyViT's second stage).

        Returns:
          torch.Tensor: N x C/8 x 4H x 4W: the sum of `embedding_encoder` of the final embedding and
            `compress_vit_feat` of the early feature, each if the variant fuses it; zeros if it fuses neither.
            The decoder adds its own upscaled feature per prompt.
        """
        fused = []
        if "embedding_encoder" in self.fuses:
            fused.append(self.embedding_encoder(image_embeddings))
        if "compress_vit_feat" in self.fuses:
            fused.append(self.compress_vit_feat(early_features.permute(0, 3, 1, 2)))
        if not fused:
            n, _, h, w = image_embeddings.shape
            return image_embeddings.new_zeros(n, self.transformer_dim // 8, 4 * h, 4 * w)
        return reduce(torch.add, fused)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        hq_token_only: bool,
        hq_features: torch.Tensor,
        image_index: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict one mask per prompt, as the authors' release does (see `DecoderOutput.hq_sam`); a fine-tuning
        baseline gives SAM's selected mask from its fine-tuned copy (`DecoderOutput.selected`; no HQ mask, so
        `hq_token_only` has nothing to choose).

        Arguments:
          image_embeddings (torch.Tensor): N x C x H x W for N images.
          image_pe (torch.Tensor): 1 x C x H x W positional encoding.
          sparse_prompt_embeddings (torch.Tensor): B x T x C for B prompts.
          dense_prompt_embeddings (torch.Tensor): B x C x H x W.
          multimask_output (bool): SAM's part of the mask is the best (by predicted IoU) of its three
            multimask outputs if True, its single-mask output if False.
          hq_token_only (bool): return the HQ mask alone if True, SAM's mask plus the HQ mask if False.
          hq_features (torch.Tensor): N x C/8 x 4H x 4W from `hq_features`.
          image_index (torch.Tensor or None): B indices into the N images; None means N is 1 (shared by
            every prompt) or B (one prompt per image).

        Returns:
          torch.Tensor: B x 1 x 4H x 4W mask logits.
          torch.Tensor: B x 1 predicted IoU of SAM's selected mask.
        """
        output = self.predict_masks_hq(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            hq_features,
            image_index,
        )
        if self.finetuned is not None:
            return output.selected(multimask_output)
        return output.hq_sam(multimask_output, hq_token_only)

    def trained_logits(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        hq_features: torch.Tensor,
        image_index: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """B x 1 x 4H x 4W logits of the mask the variant learns, in single-mask mode (training's loss input): the
        HQ token's, or a baseline's SAM single-mask output from its fine-tuned copy. Arguments as `forward`."""
        if self.finetuned is None:
            return self.predict_masks_hq(
                image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, hq_features,
                image_index, sam_outputs=False,
            ).hq_mask
        return self.predict_masks_hq(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, hq_features, image_index
        ).sam_masks[:, :1]

    def predict_masks_hq(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        hq_features: Optional[torch.Tensor],
        image_index: Optional[torch.Tensor] = None,
        sam_outputs: bool = True,
    ) -> "DecoderOutput":
        """Run the two-way transformer once for all prompts of all images (Meta's `predict_masks`, batched).

        With `hq_features` None the HQ token is left out and SAM's outputs are exactly plain SAM's
        (`DecoderOutput.sam` is Meta's `MaskDecoder.forward`). With `hq_features` it is the variant's pass: the HQ
        token joins SAM's and its mask feature fuses what the variant fuses; a fine-tuning baseline instead runs
        SAM's tokens alone through its fine-tuned copy (SAM's outputs are the baseline's; no HQ mask). With
        `sam_outputs` False SAM's own masks and IoUs are not computed (training an HQ token needs its logits only).
        """
        batch = sparse_prompt_embeddings.shape[0]
        image_index = _prompt_to_image_index(image_embeddings, batch, image_index)
        variant_pass = hq_features is not None
        sam = self.finetuned if variant_pass and self.finetuned is not None else self  # the SAM parts this pass runs
        hq_token = variant_pass and self.finetuned is None
        token_weights = [sam.iou_token.weight, sam.mask_tokens.weight]
        if hq_token:
            token_weights.append(self.hf_token.weight)  # differs from Meta: the HQ output token joins SAM's
        output_tokens = torch.cat(token_weights, dim=0).unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

        src = image_embeddings[image_index] + dense_prompt_embeddings
        pos_src = image_pe.expand(batch, -1, -1, -1)
        b, c, h, w = src.shape

        hs, src = sam.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + self.num_mask_tokens), :]

        src = src.transpose(1, 2).view(b, c, h, w)
        upscaled_embedding = sam.output_upscaling(src)
        b, c, h, w = upscaled_embedding.shape
        sam_masks = sam_iou = None
        if sam_outputs:
            hyper_in = torch.stack(
                [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(sam.output_hypernetworks_mlps)], dim=1
            )
            sam_masks = (hyper_in @ upscaled_embedding.view(b, c, h * w)).view(b, -1, h, w)
            sam_iou = sam.iou_prediction_head(iou_token_out)
        if not hq_token:
            return DecoderOutput(sam_masks, None, sam_iou)

        # Differs from Meta: the HQ token's mask, from SAM's upscaled feature fused with the global-local feature.
        fusion_conv = "embedding_maskfeature" in self.fuses
        mask_feature = self.embedding_maskfeature(upscaled_embedding) if fusion_conv else upscaled_embedding
        upscaled_embedding_hq = mask_feature + hq_features[image_index]
        hq_filter = self.hf_mlp(hs[:, 1 + self.num_mask_tokens, :]).unsqueeze(1)
        hq_mask = (hq_filter @ upscaled_embedding_hq.view(b, c, h * w)).view(b, 1, h, w)
        return DecoderOutput(sam_masks, hq_mask, sam_iou)


@dataclass(frozen=True)
class DecoderOutput:
    """What one `MaskDecoderHQ.predict_masks_hq` pass gives for B prompts (4H x 4W: the low-res mask grid).

    Attributes:
      sam_masks (torch.Tensor or None): B x 4 x 4H x 4W logits of SAM's mask tokens (single-mask token first; a
        fine-tuning baseline's in its variant's pass); None when SAM's outputs were not asked for.
      hq_mask (torch.Tensor or None): B x 1 x 4H x 4W logits of the HQ token; None without HQ features and for
        the fine-tuning baselines.
      sam_iou (torch.Tensor or None): B x 4 predicted IoUs of SAM's mask tokens; None as `sam_masks`.
    """

    sam_masks: Optional[torch.Tensor]
    hq_mask: Optional[torch.Tensor]
    sam_iou: Optional[torch.Tensor]

    def sam(self, multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Plain SAM's selection, Meta's `MaskDecoder.forward`: B x 3 (multimask) or B x 1 masks and IoUs."""
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        return self.sam_masks[:, mask_slice], self.sam_iou[:, mask_slice]

    def selected(self, multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """SAM's one mask per prompt, B x 1 masks and IoUs: the best of its three multimask outputs by predicted
        IoU, or its single mask."""
        if multimask_output:
            iou, best = torch.max(self.sam_iou[:, 1:], dim=1)
            return self.sam_masks[torch.arange(self.sam_masks.shape[0]), best + 1].unsqueeze(1), iou.unsqueeze(1)
        return self.sam_masks[:, :1], self.sam_iou[:, :1]

    def refined(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each of SAM's three multimask masks plus the HQ mask, B x 3 masks, with their B x 3 predicted IoUs
        ("segment everything"'s candidates per point, `hqsam.automatic_mask_generator`)."""
        masks, iou = self.sam(multimask_output=True)
        return masks + self.hq_mask, iou

    def hq_sam(self, multimask_output: bool, hq_token_only: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """The release's HQ-SAM output: B x 1 masks (the HQ mask, or SAM's selected mask plus it) and B x 1 IoUs
        of SAM's selected mask (`selected`)."""
        sam_mask, iou = self.selected(multimask_output)
        return (self.hq_mask if hq_token_only else sam_mask + self.hq_mask), iou


def _prompt_to_image_index(
    image_embeddings: torch.Tensor, num_prompts: int, image_index: Optional[torch.Tensor]
) -> torch.Tensor:
    num_images, device = image_embeddings.shape[0], image_embeddings.device
    if image_index is not None:
        if image_index.shape != (num_prompts,):
            raise ValueError(
                f"image_index must have one entry per prompt ({num_prompts}), got shape {tuple(image_index.shape)}"
            )
        return image_index.to(device)
    if num_images == 1:
        return torch.zeros(num_prompts, dtype=torch.long, device=device)
    if num_images == num_prompts:
        return torch.arange(num_prompts, device=device)
    raise ValueError(
        f"{num_images} image embeddings for {num_prompts} prompts: "
        "pass image_index to say which image each prompt belongs to"
    )
