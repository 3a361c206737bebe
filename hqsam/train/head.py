"""The trainable path of one training step, batched: fused HQ features, then for every prompt the logits the
model's variant trains (HQ-SAM's: the HQ token's).

The release decodes image by image in a Python loop. Here the frozen encoder runs once for the batch (float32 as
in the release, or bfloat16 autocast with precision "bf16") and the decoder once per group of prompts whose token
counts agree (at most a handful of groups: box, points, mask), each group through one batched two-way-transformer
pass; results are identical to per-image decoding.
"""

from collections import defaultdict
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from ..checkpoint import is_trained_parameter
from ..decoding import encode_pixels
from ..modeling import HQSam

Group = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # example indices, sparse, dense prompt embeddings


@torch.no_grad()
def encode_frozen(model: HQSam, images: torch.Tensor, precision: str = "fp32") -> Tuple[torch.Tensor, torch.Tensor]:
    """Frozen encoder on B x 3 x S x S images (0-255): B x C x E x E embeddings and B x E x E x vit_dim early
    features, float32; `precision` "fp32" or "bf16" (autocast), as evaluation runs it (`encode_pixels`)."""
    return encode_pixels(model, model.preprocess(images), precision)


def embed_prompts(model: HQSam, batch: Dict[str, Any], grad: bool = False) -> List[Group]:
    """Prompt embeddings of a collated batch (hqsam.train.examples.collate), grouped by prompt shape.

    Without `grad` (HQ training: the prompt encoder is frozen) no autograd graph is kept."""
    with torch.set_grad_enabled(grad):
        return _embed_prompts(model, batch)


def _embed_prompts(model: HQSam, batch: Dict[str, Any]) -> List[Group]:
    device = model.device
    members: Dict[Tuple[str, int], List[int]] = defaultdict(list)
    for i, kind in enumerate(batch["kind"]):
        members[(kind, len(batch["points"][i]) if kind == "point" else 0)].append(i)
    groups = []
    for (kind, _), indices in members.items():
        points = boxes = masks = None
        if kind == "point":
            coords = torch.stack([batch["points"][i] for i in indices]).to(device)
            points = (coords, torch.ones(coords.shape[:2], dtype=torch.int, device=device))
        elif kind == "box":
            boxes = torch.stack([batch["box"][i] for i in indices]).to(device)
        else:
            masks = torch.stack([batch["mask_input"][i] for i in indices]).to(device)
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        groups.append((torch.tensor(indices, device=device), sparse, dense))
    return groups


class HQLogits(nn.Module):
    """Wraps an HQSam so that DistributedDataParallel sees the trainable path as one module call."""

    def __init__(self, model: HQSam) -> None:
        super().__init__()
        self.model = model

    def forward(self, embeddings: torch.Tensor, early: torch.Tensor, groups: List[Group]) -> torch.Tensor:
        """The logits the variant trains (`MaskDecoderHQ.trained_logits`: the HQ token's, or a fine-tuning
        baseline's SAM single mask), B x 1 x 4E x 4E, in example order (single-mask mode, the loss's input)."""
        decoder = self.model.mask_decoder
        hq_features = decoder.hq_features(embeddings, early)
        image_pe = self.model.prompt_encoder.get_dense_pe()
        logits = [
            decoder.trained_logits(embeddings, image_pe, sparse, dense, hq_features, indices)
            for indices, sparse, dense in groups
        ]
        return in_example_order(groups, logits)


def in_example_order(groups: List[Group], outputs: List[torch.Tensor]) -> torch.Tensor:
    """Per-group decoder outputs (one tensor per group, rows in the group's order) back in example order."""
    return torch.cat(outputs)[torch.argsort(torch.cat([indices for indices, _, _ in groups]))]


def hq_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The tensors training changes, as detached CPU copies under their checkpoint names: those the model's variant
    trains (`hqsam.checkpoint.is_trained_parameter`; HQ-SAM's: the HQ parts)."""
    variant = model.mask_decoder.variant
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if is_trained_parameter(k, variant)}
