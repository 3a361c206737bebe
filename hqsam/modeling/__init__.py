from .hq_sam import HQSam, first_global_attention_block
from .mask_decoder_hq import DecoderOutput, MaskDecoderHQ

__all__ = ["DecoderOutput", "HQSam", "MaskDecoderHQ", "first_global_attention_block"]
