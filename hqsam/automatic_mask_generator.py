"""HQSamAutomaticMaskGenerator: Meta's "segment everything" (`SamAutomaticMaskGenerator`) on HQ-SAM.

Meta's generator prompts the image with a grid of points, keeps the candidate masks that pass the predicted-IoU and
stability filters and removes duplicates by box NMS, per crop and across crops. This one is Meta's, arguments and
records alike, with one change: the candidates each point gives (`candidates`, `hq_token_only`), decoded for
`points_per_batch` points at a time from the crop's one image embedding.

  "release": one per point, SAM's best of its three multimask masks (by predicted IoU) plus the HQ mask logits,
    scored with that predicted IoU: what the authors' predictor gives their generator (their release calls it
    without `hq_token_only`, so always this).
  "refined": three per point, as Meta's: each of SAM's three multimask masks plus the HQ mask logits, each scored
    with its own predicted IoU. SAM's masks are those of the HQ-SAM pass (the HQ token joins SAM's tokens in the
    transformer), so "release"'s mask is the one of the three with the highest predicted IoU.
  "sam": plain SAM's three masks per point, without the HQ token: exactly Meta's generator on SAM's weights.

With `hq_token_only` the HQ mask alone is each point's one candidate, for "release" and "refined" alike (the HQ
token gives one mask per prompt, and it is not refined by SAM's), scored with the predicted IoU the release pairs
with it: that of SAM's best multimask mask. "sam" has no HQ token to use, so the pair is refused.
"""

from typing import List, Optional

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator

from .modeling import HQSam
from .predictor import HQSamPredictor, TorchPrediction

CANDIDATES = ("release", "refined", "sam")
OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
# benchmarks/amg_candidates.py on the toy COCO val images: see the docstring of HQSamAutomaticMaskGenerator.
DEFAULT_CANDIDATES = "refined"


class HQSamAutomaticMaskGenerator(SamAutomaticMaskGenerator):
    def __init__(
        self,
        model: HQSam,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        hq_token_only: bool = False,
        candidates: str = DEFAULT_CANDIDATES,
    ) -> None:
        """Masks for everything in an image, from a grid of point prompts: Meta's `SamAutomaticMaskGenerator`
        (see there for every argument but the last two, and `generate` for the records) with HQ-SAM's masks.

        Arguments:
          model (HQSam): the HQ-SAM model (`hqsam.build_hqsam`).
          hq_token_only (bool): each point's one candidate is the HQ mask alone (see the module docstring).
          candidates (str): the candidates per point, "release", "refined" or "sam" (see the module docstring).
            The default, "refined", found more of the toy COCO val instances than "release" with the toy-trained
            HQ-SAM (benchmarks/amg_candidates.py: 20 images, 72 instances, 16 x 16 points, predicted IoU 0.1 and
            stability 0.5, as Meta's thresholds keep nothing there): 24 against 20 at mask IoU >= 0.5 (33% against
            28%; image-mean gain +4.2 points, 95% paired bootstrap interval [0.0, 9.5]), 5 against 2 at >= 0.75,
            mean best IoU 41.9% against 37.2% (gain [+2.7, +6.9], 18 of 20 images better), at twice the masks per
            image (39 against 20).
        """
        if candidates not in CANDIDATES:
            raise ValueError(f"candidates must be one of {CANDIDATES}, got {candidates!r}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids (the other None)")
        predictor = CandidatePredictor(model, candidates, hq_token_only)  # TypeError unless model is an HQSam
        if hq_token_only and candidates == "sam":
            raise ValueError("hq_token_only uses the HQ token, which candidates='sam' leaves out: use one or the other")
        if candidates == "refined" and model.mask_decoder.finetuned is not None:
            raise ValueError(f"candidates='refined' adds the HQ mask, which the fine-tuning baseline "
                             f"{model.mask_decoder.variant!r} lacks: use 'release' or 'sam'")
        super().__init__(
            model, points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh,
            stability_score_offset, box_nms_thresh, crop_n_layers, crop_nms_thresh, crop_overlap_ratio,
            crop_n_points_downscale_factor, point_grids, min_mask_region_area, output_mode,
        )
        self.predictor = predictor  # in place of Meta's SamPredictor
        self.candidates, self.hq_token_only = candidates, hq_token_only


class CandidatePredictor(HQSamPredictor):
    def __init__(self, model: HQSam, candidates: str, hq_token_only: bool) -> None:
        """An HQSamPredictor whose `predict_torch` gives a generator's candidates per prompt (Meta's generator
        calls it with `multimask_output=True`)."""
        super().__init__(model)
        self.candidates, self.hq_token_only = candidates, hq_token_only

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> TorchPrediction:
        """B x C x H x W masks, B x C predicted IoUs and B x C x 4E x 4E low-res logits for B prompts (inputs as
        `HQSamPredictor.predict_torch`): C = 3 for "refined" and "sam" with multimask output, else 1 (each
        candidates value's single-mask output without multimask)."""
        prompts = (point_coords, point_labels, boxes, mask_input, multimask_output, return_logits)
        if self.candidates == "sam":
            return self.predict_sam_torch(*prompts)
        if self.candidates == "release" or self.hq_token_only or not multimask_output:
            return super().predict_torch(*prompts, hq_token_only=self.hq_token_only)
        encoded, sparse, dense = self._embed_prompts(point_coords, point_labels, boxes, mask_input, hq=True)
        output = self.model.mask_decoder.predict_masks_hq(
            encoded.embeddings, self.model.prompt_encoder.get_dense_pe(), sparse, dense, encoded.hq_features
        )
        return self._upsample(*output.refined(), return_logits)
