"""HQ-SAM (Segment Anything in High Quality, NeurIPS 2023) on top of Meta's segment-anything."""

from .automatic_mask_generator import HQSamAutomaticMaskGenerator
from .build import (
    MODEL_SPECS, ModelSpec, SamSpec, TinyViTSpec, build_hqsam, build_sam, hqsam_model_registry, infer_model_type,
)
from .checkpoint import CheckpointError, is_hq_parameter, read_state_dict, save_state_dict
from .hf_format import load_hf, read_hf_checkpoint, save_hf
from .modeling import HQSam, MaskDecoderHQ
from .onnx_export import export_onnx
from .predictor import HQSamPredictor

__all__ = [
    "MODEL_SPECS",
    "CheckpointError",
    "HQSam",
    "HQSamAutomaticMaskGenerator",
    "HQSamPredictor",
    "MaskDecoderHQ",
    "ModelSpec",
    "SamSpec",
    "TinyViTSpec",
    "build_hqsam",
    "build_sam",
    "export_onnx",
    "hqsam_model_registry",
    "infer_model_type",
    "is_hq_parameter",
    "load_hf",
    "read_hf_checkpoint",
    "read_state_dict",
    "save_hf",
    "save_state_dict",
]
