"""From a (image, mask) sample to a training example: flip, large-scale jitter, one prompt, keyed randomness.

Every random draw of an example comes from generators seeded by (seed, epoch, sample index), never from global
state, so an example is the same whichever process, worker or resumed run makes it. That is what lets a
2-process run equal a 1-process run with twice the batch, and a resumed run equal an uninterrupted one.

The loss target is the binarised GT (`target="binary"`) or, as the release trains, the soft GT (grayscale / 255,
`target="soft"`), flipped and jittered exactly as the binarised mask; the prompts come from the binarised mask in
both cases, so the setting changes the target and nothing else.
"""

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .augment import hflip, large_scale_jitter
from ..prompts import boxes_from_masks, choose_prompt_types, noisy_mask, sample_points
from ..seeding import keyed_generator

# Streams of one sample's randomness, kept apart so that fixing the augmentation (cached embeddings) leaves
# the prompts and the loss points free to vary across epochs.
AUGMENT_STREAM, PROMPT_STREAM, LOSS_STREAM = 0, 1, 2
TARGETS = ("soft", "binary")


class TrainingExamples(Dataset):
    """Indexed by (epoch, sample index); yields dicts with the augmented image and mask and one prompt.

    Keys of an example: "image" 3 x S x S float (0-255), "target" 1 x S x S float in [0, 1] (the augmented
    binarised mask, or with `target="soft"` the augmented `Sample.soft` where the source has one), "kind" (box, point
    or noise_mask), "box" 4 (x0, y0, x1, y1) in S-pixel units, "points" N x 2, "mask_input" 1 x h x w (the noisy
    mask, 0/255 as the release feeds it), "index" and "augmentation" (the epoch the augmentation was keyed by).
    """

    def __init__(
        self,
        source: Dataset,
        image_size: int,
        mask_input_size: Tuple[int, int],
        seed: int,
        scale_range: Tuple[float, float],
        flip_prob: float,
        prompt_kinds: Sequence[str],
        num_points: int,
        augmentations: int = 0,
        target: str = "binary",
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.source = source
        self.image_size = image_size
        self.mask_input_size = tuple(mask_input_size)
        self.seed = seed
        self.scale_range = tuple(scale_range)
        self.flip_prob = flip_prob
        self.prompt_kinds = tuple(prompt_kinds)
        self.num_points = num_points
        self.augmentations = augmentations  # 0: a new augmentation every epoch; k: cycle through k of them
        self.target = target

    def __len__(self) -> int:
        return len(self.source)

    def augmentation_of(self, epoch: int) -> int:
        return epoch % self.augmentations if self.augmentations else epoch

    def __getitem__(self, key: Tuple[int, int]) -> Dict[str, Any]:
        epoch, index = key
        augmentation = self.augmentation_of(epoch)
        sample = self.source[index]
        image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1).float()
        soft = self.target == "soft" and sample.soft is not None
        masks = np.stack([sample.mask, sample.soft]) if soft else sample.mask[None]
        image, masks = self._augment(image, masks, augmentation, index)  # one geometry for the mask and target
        mask, target = masks[:1], masks[-1:]

        prompt = keyed_generator(self.seed, epoch, index, PROMPT_STREAM)
        kind = choose_prompt_types([prompt], self.prompt_kinds)[0]
        example = {"image": image, "target": target, "kind": kind, "index": index, "augmentation": augmentation}
        if kind == "point":
            points = sample_points(mask, self.num_points, prompt)
            if len(points) == 0:  # the jitter cropped the object away: a box prompt (of the whole image) instead
                kind = example["kind"] = "box"
            example["points"] = points
        if kind == "box":
            example["box"] = boxes_from_masks(mask[None])[0]
        if kind == "noise_mask":
            low_res = F.interpolate(mask[None], size=self.mask_input_size, mode="bilinear", align_corners=False)[0]
            example["mask_input"] = noisy_mask(low_res, prompt)
        return example

    def _augment(
        self, image: torch.Tensor, masks: np.ndarray, augmentation: int, index: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Flip and large-scale jitter keyed by (seed, augmentation, index): 3 x H x W float image and K x H x W
        masks to 3 x S x S and K x S x S float."""
        generator = keyed_generator(self.seed, augmentation, index, AUGMENT_STREAM)
        mask_tensor = torch.from_numpy(np.ascontiguousarray(masks)).float()
        image, mask_tensor = hflip(image, mask_tensor, generator, p=self.flip_prob)
        return large_scale_jitter(image, mask_tensor, self.image_size, generator, scale_range=self.scale_range)


def collate(examples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack images and targets; keep the prompts as per-example lists (their shapes differ)."""
    return {
        "image": torch.stack([e["image"] for e in examples]),
        "target": torch.stack([e["target"] for e in examples]),
        "index": torch.tensor([e["index"] for e in examples]),
        "augmentation": torch.tensor([e["augmentation"] for e in examples]),
        "kind": [e["kind"] for e in examples],
        "box": [e.get("box") for e in examples],
        "points": [e.get("points") for e in examples],
        "mask_input": [e.get("mask_input") for e in examples],
    }


def epoch_batches(num_samples: int, global_batch: int, seed: int, epoch: int) -> List[List[int]]:
    """The epoch's global batches: a permutation keyed by (seed, epoch), the incomplete last batch dropped."""
    order = torch.randperm(num_samples, generator=keyed_generator(seed, epoch)).tolist()
    return [order[start : start + global_batch] for start in range(0, num_samples - global_batch + 1, global_batch)]
