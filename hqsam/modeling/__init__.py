from .hq_sam import HQSam, first_global_attention_block
from .mask_decoder_hq import MaskDecoderHQ

__all__ = ["HQSam", "MaskDecoderHQ", "first_global_attention_block"]
