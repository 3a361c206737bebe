"""Segment an image from a box with an exported HQ-SAM pair (`hqsam export-onnx`): numpy, onnxruntime and PIL only,
no torch, no hqsam.

    hqsam export-onnx --checkpoint sam_hq_vit_b.pth --output onnx
    python examples/onnx_segment.py onnx/sam_hq_vit_b_encoder.onnx onnx/sam_hq_vit_b_decoder.onnx photo.jpg \\
        --box 40 60 300 420 --output mask.png

The image is prepared as `HQSamPredictor.set_image` does (resized, bilinear, so that its long side is the model's
input size; the encoder graph normalises and pads it), the box mapped into the resized frame as `predict(box=...)`
maps it; the mask is the decoder's logits above 0 at the image's own size.
"""

import argparse
import os
import tempfile
from typing import Optional, Sequence, Tuple

import numpy as np
import onnxruntime
from PIL import Image


def session(path: str, threads: Optional[int] = None) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session; `threads` None lets onnxruntime choose."""
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def resized_shape(height: int, width: int, long_side: int) -> Tuple[int, int]:
    """ResizeLongestSide's target (H, W): the long side becomes `long_side`, rounded half up."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def segment(
    encoder: onnxruntime.InferenceSession,
    decoder: onnxruntime.InferenceSession,
    image: np.ndarray,
    box: Sequence[float],
) -> Tuple[np.ndarray, float]:
    """The mask logits of one box.

    Arguments:
      image (np.ndarray): H x W x 3 uint8 RGB.
      box: x0, y0, x1, y1 in the image's pixels; parts outside the image are clipped.

    Returns:
      np.ndarray: H x W float32 logits (> 0 is the mask).
      float: the predicted IoU.
    """
    height, width = image.shape[:2]
    long_side = int(encoder.get_modelmeta().custom_metadata_map["image_size"])
    new_h, new_w = resized_shape(height, width, long_side)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR), dtype=np.float32)
    image_embeddings, hq_features = encoder.run(["image_embeddings", "hq_features"], {"image": resized})

    x0, y0, x1, y1 = np.clip(np.asarray(box, dtype=np.float64), 0, [width, height, width, height])
    corners = np.array([[x0, y0], [x1, y1]]) * [new_w / width, new_h / height]
    mask_input_shape = next(i.shape for i in decoder.get_inputs() if i.name == "mask_input")
    feeds = {
        "image_embeddings": image_embeddings,
        "hq_features": hq_features,
        "point_coords": corners[None].astype(np.float32),
        "point_labels": np.array([[2, 3]], dtype=np.float32),  # a box's two corners
        "mask_input": np.zeros(mask_input_shape, dtype=np.float32),
        "has_mask_input": np.zeros(1, dtype=np.float32),
        "orig_im_size": np.array([height, width], dtype=np.float32),
    }
    masks, iou_predictions, _ = decoder.run(None, feeds)
    return masks[0, 0], float(iou_predictions[0, 0])


def save_png(pixels: np.ndarray, path: str) -> None:
    """Write the PNG beside `path`, then rename it onto `path`: a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".png")
    os.close(handle)
    try:
        Image.fromarray(pixels).save(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("encoder", help="<name>_encoder.onnx")
    parser.add_argument("decoder", help="<name>_decoder.onnx")
    parser.add_argument("image", help="an image file PIL reads")
    parser.add_argument("--box", type=float, nargs=4, required=True, metavar=("X0", "Y0", "X1", "Y1"))
    parser.add_argument("--output", default="mask.png", help="the mask as a black-and-white PNG")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime's threads (default: its choice)")
    args = parser.parse_args()
    x0, y0, x1, y1 = args.box
    if x1 < x0 or y1 < y0:
        parser.error(f"--box is X0 Y0 X1 Y1 with X0 <= X1 and Y0 <= Y1, got {args.box}")
    image = np.asarray(Image.open(args.image).convert("RGB"))
    logits, iou = segment(session(args.encoder, args.threads), session(args.decoder, args.threads), image, args.box)
    save_png((logits > 0).astype(np.uint8) * 255, args.output)
    print(f"{args.output}: {int((logits > 0).sum())} of {logits.size} pixels, predicted IoU {iou:.3f}")


if __name__ == "__main__":
    main()
