"""HQ-SAM (Segment Anything in High Quality, NeurIPS 2023) on top of Meta's segment-anything."""

from .build import MODEL_SPECS, build_hqsam, build_sam, hqsam_model_registry, infer_model_type
from .checkpoint import CheckpointError, is_hq_parameter, read_state_dict, save_state_dict
from .modeling import HQSam, MaskDecoderHQ
from .predictor import HQSamPredictor

__all__ = [
    "MODEL_SPECS",
    "CheckpointError",
    "HQSam",
    "HQSamPredictor",
    "MaskDecoderHQ",
    "build_hqsam",
    "build_sam",
    "hqsam_model_registry",
    "infer_model_type",
    "is_hq_parameter",
    "read_state_dict",
    "save_state_dict",
]
