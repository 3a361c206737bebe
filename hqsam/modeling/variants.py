"""HQ-SAM and the paper's ablations as variants of one model: what each fuses and what each trains.

Table 3 (SAM frozen, the HQ output token and its MLP trained) varies what the HQ token's mask feature is made of:
SAM's upscaled decoder feature, as it is or through the fusion conv, plus the final image embedding and/or the early
ViT feature. Table 4's baselines have no HQ token: each fine-tunes a copy of parts of SAM's decoder (`finetuned`,
started from SAM's weights), and its output is SAM's mask decoded with that copy, so SAM itself stays frozen and
its own output stays available beside the baseline's. Table 3's "SAM" row is the SAM output of any of them.
"""

import difflib
from dataclasses import dataclass
from typing import Dict, Tuple

DEFAULT_VARIANT = "hq_sam"
FINETUNED = "finetuned"  # the MaskDecoderHQ attribute holding a baseline's copy of SAM's decoder parts
SAM_DECODER_MODULES = (
    "transformer", "iou_token", "mask_tokens", "output_upscaling", "output_hypernetworks_mlps", "iou_prediction_head",
)


@dataclass(frozen=True)
class Variant:
    """One model of the paper's ablations (HQ-SAM's full fusion included).

    Attributes:
      fuses: the HQ modules the HQ token's mask feature goes through besides SAM's upscaled decoder feature:
        "embedding_maskfeature" (the fusion conv on the decoder feature; without it the feature is used as it is),
        "embedding_encoder" (the final image embedding) and "compress_vit_feat" (the early ViT feature).
      finetunes: for a Table 4 baseline, the parts of SAM's decoder (`SAM_DECODER_MODULES`, or one of a module
        list's entries) that its copy fine-tunes; empty for a variant with the HQ token.
      paper: the rows it mirrors: (table file in hqsam/paper_tables, without .csv; the row's label there).
    """

    fuses: Tuple[str, ...] = ()
    finetunes: Tuple[str, ...] = ()
    paper: Tuple[Tuple[str, str], ...] = ()

    @property
    def trains(self) -> Tuple[str, ...]:
        """The modules under `mask_decoder` whose parameters learn: the HQ token, its MLP and the fusion modules
        used, or the baseline's parts of the fine-tuned copy."""
        if self.finetunes:
            return tuple(f"{FINETUNED}.{part}" for part in self.finetunes)
        return ("hf_token", "hf_mlp", *self.fuses)


TABLE3, TABLE4 = "table3_hq_features_ablation", "table4_vs_finetuning"
VARIANTS: Dict[str, Variant] = {
    "hq_sam": Variant(
        ("embedding_maskfeature", "embedding_encoder", "compress_vit_feat"),
        paper=((TABLE3, "HQ-SAM (full global-local fusion)"), (TABLE4, "HQ-SAM")),
    ),
    "hq_decoder": Variant(paper=((TABLE3, "HQ-Output Token on the decoder mask feature"),)),
    "hq_decoder_conv": Variant(("embedding_maskfeature",), paper=((TABLE3, "+ fusion conv"),)),
    "hq_decoder_conv_final": Variant(
        ("embedding_maskfeature", "embedding_encoder"), paper=((TABLE3, "+ final-layer ViT feature"),)
    ),
    "hq_decoder_conv_early": Variant(
        ("embedding_maskfeature", "compress_vit_feat"), paper=((TABLE3, "+ early-layer ViT feature"),)
    ),
    # Every part of the decoder; the loss on the single-mask output gives the IoU head and the three multimask
    # MLPs no gradient, so they keep SAM's weights.
    "finetune_decoder": Variant(finetunes=SAM_DECODER_MODULES, paper=((TABLE4, "Finetune SAM's decoder"),)),
    # SAM's four mask tokens (one embedding: the single-mask token's row gives the mask, the other rows reach it
    # through the transformer's attention and learn too) and the single-mask output's hypernetwork MLP.
    "finetune_output_token": Variant(
        finetunes=("mask_tokens", "output_hypernetworks_mlps.0"), paper=((TABLE4, "Finetune SAM's output token"),)
    ),
}


def get_variant(name: str) -> Variant:
    """VARIANTS[name]; for an unknown name a one-line ValueError with the closest name and all of them."""
    if name not in VARIANTS:
        close = difflib.get_close_matches(str(name), VARIANTS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown variant {name!r}: {hint}choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]
