"""`hqsam export-onnx`: a checkpoint's image encoder and prompt decoder as two ONNX graphs (`hqsam.onnx_export`)."""

import argparse
import warnings
from pathlib import Path

from ..build import MODEL_SPECS, build_hqsam
from ..onnx_export import DEFAULT_OPSET, check_opset, export_onnx, require_onnx


def _run_export_onnx_command(args: argparse.Namespace) -> int:
    try:
        require_onnx()
    except ModuleNotFoundError as error:
        raise ValueError(str(error)) from None  # a missing extra is the user's to install: one error line
    check_opset(args.opset)  # before a large checkpoint is read
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        model = build_hqsam(args.model_type, args.checkpoint)
    paths = export_onnx(model, args.output, hq_token_only=args.hq_token_only, multimask=args.multimask,
                        sam_decoder=args.sam_decoder, opset=args.opset)
    for path in paths.values():
        print(path)
    return 0


def add_export_onnx_command(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Register `export-onnx --checkpoint PATH [--model-type auto] --output DIR [--hq-token-only] [--multimask]
    [--sam-decoder] [--opset N]`."""
    parser = subparsers.add_parser(
        "export-onnx", help="export the image encoder and the prompt decoder as ONNX graphs",
        description="Write <name>_encoder.onnx (image -> image_embeddings, hq_features, once per image) and "
                    "<name>_decoder.onnx (SAM's web-demo decoder inputs plus hq_features -> masks, iou_predictions, "
                    "low_res_masks) into DIR, <name> being the checkpoint's file name without its suffix.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="an HQ-SAM checkpoint (.pth or .safetensors)")
    parser.add_argument("--model-type", default="auto", help=f"{', '.join(MODEL_SPECS)} or auto (default: read "
                        "from the checkpoint)")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder for the .onnx files")
    parser.add_argument("--hq-token-only", action="store_true", help="masks are the HQ token's alone (default: "
                        "SAM's mask plus the HQ mask, the release's default)")
    parser.add_argument("--multimask", action="store_true", help="SAM's part of the mask is the best of its three "
                        "multimask outputs by predicted IoU (default: its single-mask output)")
    parser.add_argument("--sam-decoder", action="store_true", help="also write <name>_sam_decoder.onnx, plain SAM's "
                        "decoder from the same embedding (three masks with --multimask)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.set_defaults(func=_run_export_onnx_command)
    return parser
