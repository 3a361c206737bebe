from .hq_sam import HQSam, early_feature_module, first_global_attention_block
from .mask_decoder_hq import DecoderOutput, MaskDecoderHQ
from .variants import DEFAULT_VARIANT, VARIANTS, Variant, get_variant

# TinyViTEncoder (hqsam.modeling.tiny_vit) is not imported here: it imports segment_anything_hq and timm.
__all__ = [
    "DEFAULT_VARIANT", "DecoderOutput", "HQSam", "MaskDecoderHQ", "VARIANTS", "Variant",
    "early_feature_module", "first_global_attention_block", "get_variant",
]
