"""HQSamPredictor: the authors' `SamPredictor` interface, plus plain SAM from the same embedding and a batch API.

What the outputs hold, as in the authors' release:
  - `predict(..., hq_token_only=True)`: the HQ-Output-Token's mask alone (what the paper scores on the HQ
    datasets).
  - `predict(..., hq_token_only=False)` (default): SAM's mask logits plus the HQ mask logits (the paper's
    setting for COCO and other multi-object benchmarks).
  - `multimask_output=True` still returns ONE mask per prompt: SAM's part is the best of its three multimask
    outputs by predicted IoU; with False it is SAM's single-mask output. The score is the predicted IoU of
    SAM's part; the HQ token predicts no IoU of its own.
  - `predict_sam(...)`: plain SAM's output (three masks with multimask_output=True), exactly Meta's
    `SamPredictor.predict`, from the same image embedding.
  - A model of one of the paper's ablations (`hqsam.modeling.VARIANTS`) gives its variant's mask in place of the HQ
    mask (a fine-tuning baseline's: SAM's mask from its fine-tuned decoder parts); `predict_sam` stays SAM's.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from .decoding import Encoded, box_logits, decode
from .image import to_rgb_uint8
from .modeling import HQSam
from .prompts import check_boxes

Prediction = Tuple[np.ndarray, np.ndarray, np.ndarray]
TorchPrediction = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class HQSamPredictor:
    def __init__(self, model: HQSam) -> None:
        """Compute an image's embedding once (`set_image`), then predict masks for many prompts."""
        if not isinstance(model, HQSam):
            raise TypeError(f"HQSamPredictor needs an HQSam model (hqsam.build_hqsam), got {type(model).__name__}")
        self.model = model
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        """Forget the current image."""
        self.is_image_set = False
        self.features: Optional[torch.Tensor] = None
        self.early_features: Optional[torch.Tensor] = None
        self._hq_features: Optional[torch.Tensor] = None
        self.original_size: Optional[Tuple[int, int]] = None
        self.input_size: Optional[Tuple[int, int]] = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an H x W x C image (uint8 RGB; other layouts and dtypes as `hqsam.image.to_rgb_uint8`)."""
        image = to_rgb_uint8(image, image_format)
        input_image = torch.as_tensor(self.transform.apply_image(image), device=self.device)
        self.set_torch_image(input_image.permute(2, 0, 1).contiguous()[None], image.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Tuple[int, ...]) -> None:
        """Encode a 1 x 3 x H x W image already resized by ResizeLongestSide (long side = the model's input)."""
        size = self.model.image_encoder.img_size
        if transformed_image.ndim != 4 or transformed_image.shape[:2] != (1, 3) or max(transformed_image.shape[2:]) != size:
            raise ValueError(
                f"set_torch_image expects a 1 x 3 x H x W tensor with long side {size}, "
                f"got shape {tuple(transformed_image.shape)}; set_image does the resizing for you"
            )
        self.reset_image()
        self.original_size = (int(original_image_size[0]), int(original_image_size[1]))
        self.input_size = (int(transformed_image.shape[2]), int(transformed_image.shape[3]))
        input_image = self.model.preprocess(transformed_image.to(self.device))
        self.features, self.early_features = self.model.encode_image(input_image)
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's 1 x C x H x W embedding."""
        self._require_image()
        return self.features

    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> Prediction:
        """HQ-SAM's mask for one prompt (see the module docstring for what it holds).

        Arguments:
          point_coords (np.ndarray or None): N x 2 points (x, y) in pixels of the original image.
          point_labels (np.ndarray or None): N labels, 1 foreground, 0 background.
          box (np.ndarray or None): a box x0, y0, x1, y1 in pixels; parts outside the image are clipped.
          mask_input (np.ndarray or None): 1 x 4E x 4E low-res logits (E the embedding size: 256 for
            the 1024-px models), e.g. the third output of an earlier call.

        Returns:
          np.ndarray: 1 x H x W masks (bool, or float logits with return_logits).
          np.ndarray: 1 predicted IoU.
          np.ndarray: 1 x 4E x 4E low-res logits.
        """
        prompts = self._prompts_from_numpy(point_coords, point_labels, box, mask_input)
        return _to_numpy(
            self.predict_torch(*prompts, multimask_output, return_logits, hq_token_only=hq_token_only)
        )

    def predict_sam(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """Plain SAM's masks for the same prompts and image embedding: C x H x W, C = 3 with multimask."""
        prompts = self._prompts_from_numpy(point_coords, point_labels, box, mask_input)
        return _to_numpy(self.predict_sam_torch(*prompts, multimask_output, return_logits))

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        hq_token_only: bool = False,
    ) -> TorchPrediction:
        """Like `predict` for B prompts at once, inputs already in the model's resized frame
        (`predictor.transform.apply_coords_torch` / `apply_boxes_torch`): B x N x 2 points, B x N labels,
        B x 4 boxes, B x 1 x 4E x 4E mask inputs. Returns B x 1 x H x W masks, B x 1 IoUs, B x 1 x 4E x 4E."""
        return self._decode(point_coords, point_labels, boxes, mask_input, multimask_output, return_logits, "HQ-SAM",
                            hq_token_only)

    @torch.no_grad()
    def predict_sam_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> TorchPrediction:
        """Plain SAM's `predict_torch` (Meta's), from the same image embedding."""
        return self._decode(point_coords, point_labels, boxes, mask_input, multimask_output, return_logits, "SAM")

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray],
        multimask_output: bool = False,
        return_logits: bool = False,
        hq_token_only: bool = False,
        image_format: str = "RGB",
        images_per_pass: int = 4,
    ) -> List[Prediction]:
        """HQ-SAM masks for many images, each with its own K_i x 4 boxes (x0, y0, x1, y1 pixels).

        The encoder runs on `images_per_pass` images at a time, the decoder once per image for all its boxes
        (`hqsam.decoding.box_logits`). Does not touch the image set with `set_image`. Returns, per image,
        K_i x 1 x H x W masks, K_i x 1 IoUs and K_i x 1 x 4E x 4E low-res logits.
        """
        results: List[Prediction] = []
        for result in box_logits(self.model, images, boxes, ("HQ-SAM",), hq_token_only, multimask_output,
                                 images_per_pass, image_format=image_format):
            masks = result.upsampled(self.model, "HQ-SAM")
            if not return_logits:
                masks = masks > self.model.mask_threshold
            decoded = result.decoded["HQ-SAM"]
            results.append(_to_numpy((masks, decoded.iou, decoded.logits), batched=True))
        return results

    @torch.no_grad()
    def _decode(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor],
        mask_input: Optional[torch.Tensor],
        multimask_output: bool,
        return_logits: bool,
        model_name: str,
        hq_token_only: bool = False,
    ) -> TorchPrediction:
        hq = model_name == "HQ-SAM"
        encoded, sparse, dense = self._embed_prompts(point_coords, point_labels, boxes, mask_input, hq)
        low_res, iou = decode(self.model, encoded, sparse, dense, None, (model_name,), hq_token_only,
                              multimask_output)[model_name]
        return self._upsample(low_res, iou, return_logits)

    def _embed_prompts(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor],
        mask_input: Optional[torch.Tensor],
        hq: bool,
    ) -> Tuple[Encoded, torch.Tensor, torch.Tensor]:
        """The image's encoding (with its fused HQ features, computed once per image, if `hq`) and the B prompts'
        B x T x C sparse and B x C x E x E dense embeddings."""
        self._require_image()
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels go together: give both or neither")
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        if hq and self._hq_features is None:
            self._hq_features = self.model.mask_decoder.hq_features(self.features, self.early_features)
        return Encoded(self.features, self._hq_features if hq else None), sparse, dense

    def _upsample(self, low_res: torch.Tensor, iou: torch.Tensor, return_logits: bool) -> TorchPrediction:
        """B x M x 4E x 4E low-res logits at the image's size, as masks (or logits), with the IoUs and themselves."""
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        return (masks if return_logits else masks > self.model.mask_threshold), iou, low_res

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("no image is set: call predictor.set_image(image) before predicting")

    def _prompts_from_numpy(
        self,
        point_coords: Optional[np.ndarray],
        point_labels: Optional[np.ndarray],
        box: Optional[np.ndarray],
        mask_input: Optional[np.ndarray],
    ) -> Tuple[Optional[torch.Tensor], ...]:
        """Check numpy prompts in original-image pixels and map them into the model's frame (batch of one)."""
        self._require_image()
        coords = labels = boxes = masks = None
        if point_coords is not None or point_labels is not None:
            if point_coords is None or point_labels is None:
                missing = "point_labels (1 foreground, 0 background, one per point)" if point_labels is None else "point_coords"
                raise ValueError(f"points need both coordinates and labels: {missing} is missing")
            point_coords = np.asarray(point_coords, dtype=np.float64)
            point_labels = np.asarray(point_labels)
            if point_coords.ndim != 2 or point_coords.shape[1] != 2 or len(point_coords) == 0:
                raise ValueError(f"point_coords must be N x 2 (x, y) with N >= 1, got shape {point_coords.shape}")
            if point_labels.shape != (len(point_coords),):
                raise ValueError(
                    f"point_labels must hold one label per point ({len(point_coords)}), got shape {point_labels.shape}"
                )
            if not np.isfinite(point_coords).all():
                raise ValueError("point_coords contain NaN or infinite values")
            if not np.isin(point_labels, (0, 1)).all():
                raise ValueError(f"point_labels must be 1 (foreground) or 0 (background), got {np.unique(point_labels)}")
            mapped = self.transform.apply_coords(point_coords, self.original_size)
            coords = torch.as_tensor(mapped, dtype=torch.float, device=self.device)[None]
            labels = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)[None]
        if box is not None:
            box = np.asarray(box, dtype=np.float64)
            if box.size != 4:
                raise ValueError(
                    f"box must be one x0, y0, x1, y1 box, got shape {box.shape}; "
                    "for many boxes use predict_torch or predict_batch"
                )
            checked = check_boxes(box.reshape(1, 4), self.original_size)
            boxes = torch.as_tensor(self.transform.apply_boxes(checked, self.original_size), dtype=torch.float, device=self.device)
        if mask_input is not None:
            mask_input = np.asarray(mask_input, dtype=np.float32)
            expected = tuple(self.model.prompt_encoder.mask_input_size)
            if mask_input.ndim == 2:
                mask_input = mask_input[None]
            if mask_input.shape != (1, *expected):
                raise ValueError(
                    f"mask_input must be 1 x {expected[0]} x {expected[1]} low-res logits (the third output of "
                    f"an earlier predict), got shape {mask_input.shape}"
                )
            if not np.isfinite(mask_input).all():
                raise ValueError("mask_input contains NaN or infinite values")
            masks = torch.as_tensor(mask_input, device=self.device)[None]
        return coords, labels, boxes, masks


def _to_numpy(prediction: TorchPrediction, batched: bool = False) -> Prediction:
    masks, scores, low_res = (t.detach().float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy() for t in prediction)
    return (masks, scores, low_res) if batched else (masks[0], scores[0], low_res[0])
