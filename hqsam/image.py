"""Conversion of user images to the H x W x 3 uint8 RGB arrays SAM expects, with clear errors otherwise."""

import numpy as np
import torch


def to_rgb_uint8(image: np.ndarray, image_format: str = "RGB") -> np.ndarray:
    """Return `image` as an H x W x 3 uint8 RGB array.

    Documented conversions: grayscale (H x W or H x W x 1) is repeated to three channels; the alpha channel of
    RGBA (or BGRA) is dropped; 16-bit images are scaled by 255/65535; float images must lie in [0, 1] and are
    scaled by 255; boolean images become 0/255; other integer images must lie in [0, 255]. Anything else,
    including empty images, raises ValueError or TypeError saying what was wrong.
    """
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if isinstance(image, torch.Tensor):
        raise TypeError(
            "got a torch.Tensor: pass an H x W x 3 numpy array (tensor.permute(1, 2, 0).cpu().numpy()), "
            "or a resized 1 x 3 x H x W tensor to set_torch_image"
        )
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"expected an H x W x C image, got an array of shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image is empty (shape {image.shape})")
    channels = image.shape[2]
    if channels not in (1, 3, 4):
        hint = ""
        if image.shape[0] in (1, 3, 4):
            hint = "; it looks channels-first: pass image.transpose(1, 2, 0)"
        raise ValueError(f"expected 1, 3 or 4 channels in an H x W x C image, got shape {image.shape}{hint}")
    image = _to_uint8(image)
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    image = image[:, :, :3]
    if image_format == "BGR":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16:
        return np.round(image.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError("the image contains NaN or infinite values")
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"float images must lie in [0, 1], this one spans [{low:g}, {high:g}]; "
                "for 0-255 values pass image.astype(np.uint8)"
            )
        return np.round(image * 255.0).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        low, high = int(image.min()), int(image.max())
        if low < 0 or high > 255:
            raise ValueError(f"{image.dtype} image values must lie in [0, 255], this one spans [{low}, {high}]")
        return image.astype(np.uint8)
    raise TypeError(f"unsupported image dtype {image.dtype}")
