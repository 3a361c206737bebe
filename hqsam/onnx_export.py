"""ONNX export of HQ-SAM as two graphs: the image encoder, run once per image, and the prompt encoder with the mask
decoder, run per prompt, SAM's web-demo contract (Meta's `SamOnnxModel`) plus one per-image input.

Encoder `<name>_encoder.onnx`:
  image (H x W x 3 float32): RGB in 0..255, resized so that its long side is the model's input size S
    (ResizeLongestSide, as `HQSamPredictor.set_image`); the graph normalises and pads it (`Sam.preprocess`).
  -> image_embeddings (1 x C x E x E), hq_features (1 x C/8 x 4E x 4E): the fused global-local feature
    (`MaskDecoderHQ.hq_features`). Fused once per image here, the early encoder feature (the release's decoder
    input `interm_embeddings`, vit_dim channels at E x E) stays out of the decoder's contract and of every click.
  H and W are at most S (a larger image would be cropped, not padded).

Decoder `<name>_decoder.onnx`, the inputs of Meta's SamOnnxModel in its order, then hq_features:
  image_embeddings: the encoder's output.
  point_coords (1 x N x 2 float32): points (x, y) in the resized frame (ResizeLongestSide.apply_coords); a box
    is two points, its corners, labelled 2 and 3; without a box a point (0, 0) labelled -1 ends the list. N >= 1:
    a box or a point is needed.
  point_labels (1 x N float32): 1 foreground, 0 background, 2 and 3 box corners, -1 padding.
  mask_input (1 x 1 x 4E x 4E float32): low-res logits of an earlier call; used when has_mask_input (1) is 1.
  orig_im_size (2 float32): the original image's H, W.
  hq_features: the encoder's output.
  -> masks (1 x 1 x H x W logits, > 0 is the mask), iou_predictions (1 x 1), low_res_masks (1 x 1 x 4E x 4E):
    `HQSamPredictor.predict(..., multimask_output=multimask, hq_token_only=hq_token_only, return_logits=True)`,
    both flags fixed at export (as Meta's `return_single_mask`).

`<name>_sam_decoder.onnx` (`sam_decoder=True`): plain SAM's decoder from the same embedding, the same inputs but
hq_features, as `HQSamPredictor.predict_sam` (3 masks and IoUs with `multimask`).

Each graph records `image_size` (S) in its metadata, the decoders their flags too. Graphs with over 1.5 GB of
weights (torch.onnx's bound, below protobuf's 2 GB; ViT-H's encoder) keep them beside them, in `<file>.data`.
"""

import importlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from segment_anything.utils.onnx import SamOnnxModel
from torch import nn

from .decoding import Encoded, decode, encode
from .modeling import HQSam

ENCODER_OUTPUTS = ("image_embeddings", "hq_features")
SAM_DECODER_INPUTS = (
    "image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size",
)
DECODER_INPUTS = (*SAM_DECODER_INPUTS, "hq_features")  # Meta's SamOnnxModel's, in its order, then HQ-SAM's
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
# The dynamo exporter's own operator set; older ones go through ONNX's version converter, which fails on some ops.
MIN_OPSET = 18
DEFAULT_OPSET = 18
EXPORT_PACKAGES = ("onnx", "onnxscript")

PathLike = Union[str, Path]


def require_onnx() -> None:
    """Raise ModuleNotFoundError, with the install command, if a package the export needs is missing."""
    missing = []
    for name in EXPORT_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ModuleNotFoundError(f"ONNX export needs {' and '.join(missing)}: pip install 'hqsam-repro[onnx]'")


def check_opset(opset: int) -> None:
    """Raise ValueError unless `opset` lies between the exporter's own and the newest the onnx package knows."""
    import onnx.defs

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} (torch.onnx's dynamo exporter) to {newest} "
                         f"(onnx {onnx.__version__}), got {opset!r}")


class ImageEncoderOnnx(nn.Module):
    def __init__(self, model: HQSam) -> None:
        """The image encoder graph: image -> image_embeddings, hq_features (see the module docstring)."""
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        encoded = encode(self.model, self.model.preprocess(image.permute(2, 0, 1).unsqueeze(0)))
        return encoded.embeddings, encoded.hq_features


class MaskDecoderOnnx(SamOnnxModel):
    def __init__(self, model: HQSam, hq_token_only: bool, multimask: bool, sam: bool = False) -> None:
        """The decoder graph: Meta's prompt embedding (`SamOnnxModel`), then `hqsam.decoding.decode` of HQ-SAM, or
        of plain SAM with `sam` (no hq_features); inputs and outputs as the module docstring says."""
        super().__init__(model, return_single_mask=False)
        self.hq_token_only, self.multimask = hq_token_only, multimask
        self.decoded = "SAM" if sam else "HQ-SAM"

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
        hq_features: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        low_res, iou = decode(self.model, Encoded(image_embeddings, hq_features), sparse, dense, None, (self.decoded,),
                              self.hq_token_only, self.multimask)[self.decoded]
        return self.mask_postprocessing(low_res, orig_im_size), iou, low_res

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """`Sam.postprocess_masks` with the sizes read from `orig_im_size`: in float64, so that the resized size
        rounds as ResizeLongestSide's Python arithmetic does, and taken as Python ints, which torch.export keeps as
        sizes known at run time (Meta's `int(tensor)` slicing fails its non-strict tracing)."""
        size = self.img_size
        masks = F.interpolate(masks, (size, size), mode="bilinear", align_corners=False)
        original = orig_im_size.to(torch.float64)
        resized_h, resized_w = torch.floor(original * (size / original.max()) + 0.5).to(torch.int64).tolist()
        height, width = original.to(torch.int64).tolist()
        masks = masks[..., :resized_h, :resized_w]
        return F.interpolate(masks, (height, width), mode="bilinear", align_corners=False)


def export_encoder(model: HQSam, path: PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write the image encoder graph to `path` (atomically); returns `path`."""
    size = model.image_encoder.img_size
    image = torch.rand(size, size * 3 // 4, 3, device=model.device) * 255  # neither side at a bound of its range
    side = {0: torch.export.Dim("height", min=1, max=size), 1: torch.export.Dim("width", min=1, max=size)}
    return _export(ImageEncoderOnnx(model), {"image": image}, ENCODER_OUTPUTS, {"image": side}, Path(path), opset,
                   {"image_size": size})


def export_decoder(
    model: HQSam,
    path: PathLike,
    *,
    hq_token_only: bool = False,
    multimask: bool = False,
    sam: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write the decoder graph of HQ-SAM (plain SAM's with `sam`, which ignores `hq_token_only`) to `path`
    (atomically); returns `path`."""
    size, (low_h, low_w) = model.image_encoder.img_size, model.prompt_encoder.mask_input_size
    channels, (embedding_h, embedding_w) = model.prompt_encoder.embed_dim, model.prompt_encoder.image_embedding_size
    device = model.device
    inputs = dict(zip(SAM_DECODER_INPUTS, (
        torch.randn(1, channels, embedding_h, embedding_w, device=device),
        torch.tensor([[[0.1, 0.2], [0.5, 0.4], [0.9, 0.8]]], device=device) * size,
        torch.tensor([[1.0, 2.0, 3.0]], device=device),
        torch.zeros(1, 1, low_h, low_w, device=device),
        torch.ones(1, device=device),
        torch.tensor([1.5 * size, 2.0 * size], device=device),
    )))
    metadata = {"image_size": size, "model": "SAM" if sam else "HQ-SAM", "multimask": multimask}
    if not sam:
        inputs["hq_features"] = torch.randn(1, channels // 8, low_h, low_w, device=device)
        metadata["hq_token_only"] = hq_token_only
    points = torch.export.Dim("num_points", min=1)
    shapes = {name: None for name in inputs}
    shapes.update(point_coords={1: points}, point_labels={1: points})
    return _export(MaskDecoderOnnx(model, hq_token_only, multimask, sam), inputs, DECODER_OUTPUTS, shapes, Path(path),
                   opset, metadata)


def export_onnx(
    model: HQSam,
    output_dir: PathLike,
    *,
    name: Optional[str] = None,
    hq_token_only: bool = False,
    multimask: bool = False,
    sam_decoder: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Dict[str, Path]:
    """Write `<name>_encoder.onnx` and `<name>_decoder.onnx` (and `<name>_sam_decoder.onnx` with `sam_decoder`)
    into `output_dir`, each atomically. `name` defaults to the checkpoint's file name without its suffix, else
    "sam_hq". Returns {"encoder": path, "decoder": path[, "sam_decoder": path]}."""
    if not isinstance(model, HQSam):
        raise TypeError(f"export_onnx needs an HQSam model (hqsam.build_hqsam), got {type(model).__name__}")
    name = name or (model.checkpoint_path.stem if model.checkpoint_path else "sam_hq")
    output_dir = Path(output_dir)
    paths = {
        "encoder": export_encoder(model, output_dir / f"{name}_encoder.onnx", opset),
        "decoder": export_decoder(model, output_dir / f"{name}_decoder.onnx", hq_token_only=hq_token_only,
                                  multimask=multimask, opset=opset),
    }
    if sam_decoder:
        paths["sam_decoder"] = export_decoder(model, output_dir / f"{name}_sam_decoder.onnx", multimask=multimask,
                                              sam=True, opset=opset)
    return paths


def _export(
    module: nn.Module,
    inputs: Dict[str, torch.Tensor],
    output_names: Tuple[str, ...],
    dynamic_shapes: Dict[str, Optional[Dict[int, torch.export.Dim]]],
    path: Path,
    opset: int,
    metadata: Dict[str, object],
) -> Path:
    """torch.onnx's dynamo exporter on `module` in eval mode (the model's mode is restored; eval() also re-caches
    TinyViT's attention biases from its weights), the graph's inputs named and ordered as `inputs`; then `_save`."""
    check_opset(opset)
    require_onnx()
    model: nn.Module = module.model
    training = model.training
    try:
        with warnings.catch_warnings():
            # The decoder's points and labels share their number, one named axis: the exporter warns it used it once.
            warnings.filterwarnings("ignore", message="# The axis name: num_points will not be used")
            program = torch.onnx.export(
                module.eval(), (), kwargs=inputs, input_names=list(inputs), output_names=list(output_names),
                dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True, verbose=False,
            )
    finally:
        model.train(training)
    written = program.model.opset_imports.get("")
    if written != opset:  # the exporter keeps its own opset when ONNX's version converter fails, and only logs it
        raise ValueError(f"torch.onnx could not convert the graph to opset {opset} (it stayed at {written}): "
                         f"use opset {written}, or another between {MIN_OPSET} and {opset}")
    program.model.metadata_props.update({key: str(value) for key, value in metadata.items()})
    _save(program, path)
    return path


def _save(program: "torch.onnx.ONNXProgram", path: Path) -> None:
    """Save into a folder beside `path`, then move each file into place, fsynced, the weights file (if any) first:
    `path` is absent, its old version or complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        program.save(staging / path.name)
        for file in sorted(staging.iterdir(), key=lambda file: file.name == path.name):
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(file, 0o644)
            os.replace(file, path.parent / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
