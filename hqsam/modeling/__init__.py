from .hq_sam import HQSam, first_global_attention_block
from .mask_decoder_hq import DecoderOutput, MaskDecoderHQ
from .variants import DEFAULT_VARIANT, VARIANTS, Variant, get_variant

__all__ = [
    "DEFAULT_VARIANT", "DecoderOutput", "HQSam", "MaskDecoderHQ", "VARIANTS", "Variant",
    "first_global_attention_block", "get_variant",
]
