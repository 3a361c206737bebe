"""Training augmentation, prompts, soft targets and loss: each checked against a value computed another way, and
every random draw reproducible from the per-sample generator."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes

from hqsam.data.sources import FolderSource
from hqsam.train.augment import hflip, large_scale_jitter
from hqsam.train.examples import AUGMENT_STREAM, TARGETS, TrainingExamples
from hqsam.train.loss import bce_loss, dice_loss, mask_loss, point_sample, uncertain_point_coords
from hqsam.prompts import boxes_from_masks, choose_prompt_types, noisy_mask, sample_points
from hqsam.seeding import keyed_generator


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_pair(height: int, width: int, seed: int = 0):
    generator = gen(seed)
    image = torch.rand(3, height, width, generator=generator) * 255.0
    mask = (torch.rand(1, height, width, generator=generator) > 0.5).float()
    return image, mask


# --- augmentation ---------------------------------------------------------------------------------------------


def test_hflip_follows_one_draw_and_flips_image_and_mask_together():
    image, mask = random_pair(5, 7)
    flipped = hflip(image, mask, gen(0), p=1.0)
    assert torch.equal(flipped[0], torch.from_numpy(image.numpy()[:, :, ::-1].copy()))
    assert torch.equal(flipped[1], torch.from_numpy(mask.numpy()[:, :, ::-1].copy()))
    kept = hflip(image, mask, gen(0), p=0.0)
    assert kept[0] is image and kept[1] is mask
    flips = 0
    for seed in range(40):
        expected = torch.rand(1, generator=gen(seed)).item() < 0.5
        out_image, out_mask = hflip(image, mask, gen(seed))
        assert torch.equal(out_image, image.flip(-1) if expected else image)
        assert torch.equal(out_mask, mask.flip(-1) if expected else mask)
        flips += expected
    assert 0 < flips < 40
    assert hflip(image.to(torch.uint8), mask, gen(0), p=1.0)[0].dtype == torch.uint8


def test_lsj_shapes_and_unit_scale_on_square_input_is_identity():
    for shape in [(40, 60), (60, 40), (7, 90), (32, 32)]:
        image, mask = random_pair(*shape)
        out_image, out_mask = large_scale_jitter(image, mask, 32, gen(1))
        assert out_image.shape == (3, 32, 32) and out_mask.shape == (1, 32, 32)
        assert out_image.dtype == torch.float32 and out_mask.dtype == torch.float32
        assert 0.0 <= out_mask.min() and out_mask.max() <= 1.0
    image, mask = random_pair(32, 32)
    out_image, out_mask = large_scale_jitter(image, mask, 32, gen(1), scale_range=(1.0, 1.0))
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


def test_lsj_uint8_image_is_converted_to_float():
    image, mask = random_pair(32, 32)
    out_image, _ = large_scale_jitter(image.to(torch.uint8), mask, 32, gen(1), scale_range=(1.0, 1.0))
    assert torch.equal(out_image, image.to(torch.uint8).float())


def test_lsj_same_seed_same_output_different_seed_different():
    image, mask = random_pair(40, 56)
    first = large_scale_jitter(image, mask, 32, gen(3))
    again = large_scale_jitter(image, mask, 32, gen(3))
    other = large_scale_jitter(image, mask, 32, gen(4))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_lsj_small_scale_downsamples_then_pads_with_128_and_0():
    image, mask = random_pair(32, 32)
    # s = 0.25: a 32 px square becomes 8 px; bilinear (align_corners False, no antialias) at exactly 1/4 reads
    # source position 4i + 1.5, the mean of pixels 4i + 1 and 4i + 2 in each axis.
    out_image, out_mask = large_scale_jitter(image, mask, 32, gen(0), scale_range=(0.25, 0.25))

    def quarter(x: torch.Tensor) -> np.ndarray:
        x = x.double().numpy()
        x = (x[:, 1::4] + x[:, 2::4]) / 2
        return (x[:, :, 1::4] + x[:, :, 2::4]) / 2

    assert np.allclose(out_image[:, :8, :8].numpy(), quarter(image), atol=1e-4)
    assert np.allclose(out_mask[:, :8, :8].numpy(), quarter(mask), atol=1e-6)
    assert (out_image[:, 8:, :] == 128.0).all() and (out_image[:, :, 8:] == 128.0).all()
    assert (out_mask[:, 8:, :] == 0.0).all() and (out_mask[:, :, 8:] == 0.0).all()
    assert set(out_mask[:, :8, :8].unique().tolist()) - {0.0, 1.0}, "the mask must stay soft"


def test_lsj_keeps_aspect_ratio_and_pads_the_short_side():
    image, mask = random_pair(20, 40)
    out_image, out_mask = large_scale_jitter(image, mask, 32, gen(0), scale_range=(1.0, 1.0))
    expected = F.interpolate(image[None], size=(16, 32), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(out_image[:, :16], expected)
    assert (out_image[:, 16:] == 128.0).all() and (out_mask[:, 16:] == 0.0).all()


def test_lsj_large_scale_crops_a_random_window():
    image, mask = random_pair(16, 16)
    full = F.interpolate(image[None], size=(32, 32), mode="bilinear", align_corners=False)[0]
    offsets = set()
    for seed in range(8):
        out_image, _ = large_scale_jitter(image, mask, 16, gen(seed), scale_range=(2.0, 2.0))
        matches = [
            (top, left)
            for top in range(17)
            for left in range(17)
            if torch.equal(out_image, full[:, top : top + 16, left : left + 16])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 1


@pytest.mark.parametrize(
    "image, mask, kwargs, message",
    [
        (torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), {}, "3 x H x W image"),
        (torch.zeros(3, 8, 8), torch.zeros(8, 8), {}, "K x H x W mask"),
        (torch.zeros(3, 8, 8), torch.zeros(1, 8, 9), {}, "differ"),
        (torch.zeros(3, 8, 8), torch.zeros(1, 8, 8), {"scale_range": (2.0, 1.0)}, "scale_range"),
        (torch.zeros(3, 8, 8), torch.zeros(1, 8, 8), {"scale_range": (0.0, 1.0)}, "scale_range"),
    ],
)
def test_lsj_bad_input(image, mask, kwargs, message):
    with pytest.raises(ValueError, match=message):
        large_scale_jitter(image, mask, 16, gen(0), **kwargs)


# --- prompts --------------------------------------------------------------------------------------------------


def test_box_of_a_hand_made_mask_and_of_an_empty_one():
    masks = torch.zeros(3, 1, 10, 12)
    masks[0, 0, 2:5, 3:9] = 1.0
    masks[0, 0, 7, 1] = 0.6  # counts (> 0.5)
    masks[0, 0, 0, 11] = 0.5  # does not
    masks[1, 0, 9, 11] = 1.0
    boxes = boxes_from_masks(masks)
    assert boxes.dtype == torch.float32
    assert boxes[0].tolist() == [1.0, 2.0, 8.0, 7.0]
    assert boxes[1].tolist() == [11.0, 9.0, 11.0, 9.0]
    assert boxes[2].tolist() == [0.0, 0.0, 11.0, 9.0]


def test_boxes_equal_torchvision_on_random_masks():
    masks = torch.rand(6, 1, 20, 30, generator=gen(0)) ** 8  # sparse foreground
    assert torch.equal(boxes_from_masks(masks), masks_to_boxes(masks[:, 0] > 0.5))


def test_sample_points_are_distinct_foreground_pixels():
    mask = torch.zeros(1, 20, 30)
    mask[0, 5:12, 10:25] = 0.9
    points = sample_points(mask, 10, gen(0))
    assert points.shape == (10, 2) and points.dtype == torch.float32
    xs, ys = points[:, 0].long(), points[:, 1].long()
    assert (mask[0, ys, xs] > 0.5).all()
    assert len({tuple(p) for p in points.tolist()}) == 10
    assert torch.equal(points, sample_points(mask, 10, gen(0)))
    assert not torch.equal(points, sample_points(mask, 10, gen(1)))


def test_sample_points_tiny_and_empty_masks():
    mask = torch.zeros(1, 20, 30)
    mask[0, 3, 4] = mask[0, 17, 28] = mask[0, 9, 0] = 1.0
    points = sample_points(mask, 10, gen(0))
    assert sorted(map(tuple, points.tolist())) == [(0.0, 9.0), (4.0, 3.0), (28.0, 17.0)]
    empty = sample_points(torch.zeros(1, 20, 30), 10, gen(0))
    assert empty.shape == (0, 2)


def test_noisy_mask_changes_only_pixels_near_the_edge_and_is_0_or_255():
    mask = torch.zeros(1, 128, 128)
    mask[0, 32:96, 32:96] = 1.0
    noisy = noisy_mask(mask, gen(0))
    assert noisy.shape == (1, 128, 128) and set(noisy.unique().tolist()) <= {0.0, 255.0}
    changed = (noisy / 255.0) != mask
    assert changed.any()
    # Bilinear 8x down then up reads input pixels at most 9 px away, so where both coordinates are more than
    # 16 px from the square's edge lines the smooth copy equals the GT and so must the output.
    distance_to_edge = np.full((128, 128), np.inf)
    ys, xs = np.mgrid[:128, :128]
    for edge in (32, 96):
        distance_to_edge = np.minimum(distance_to_edge, np.abs(ys - edge + 0.5))
        distance_to_edge = np.minimum(distance_to_edge, np.abs(xs - edge + 0.5))
    assert not changed[0][torch.from_numpy(distance_to_edge > 16)].any()
    assert torch.equal(noisy, noisy_mask(mask, gen(0)))
    assert not torch.equal(noisy, noisy_mask(mask, gen(1)))


def test_noisy_mask_equals_the_release_formula_with_the_generators_noise():
    mask = (torch.rand(1, 64, 64, generator=gen(2)) > 0.7).float()
    mask[0, :, :32] = 1.0  # a flat half: no band there
    mask[0, 40:50, 40:50] = 0.3  # soft values
    noisy = noisy_mask(mask, gen(0))
    small = F.interpolate(mask[None], size=(8, 8), mode="bilinear", align_corners=False)
    smooth = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)[0]
    band = (mask - smooth).abs() >= 0.01
    noise = torch.randn(1, 64, 64, generator=gen(0))
    assert torch.equal(noisy, torch.where(band, mask + noise, mask).gt(0.5).float() * 255.0)
    assert torch.equal((noisy / 255.0)[~band], (mask > 0.5).float()[~band])
    assert ((noisy / 255.0) != mask)[band].any()
    assert torch.equal(noisy_mask(torch.ones(1, 16, 16), gen(0)), torch.full((1, 16, 16), 255.0))
    assert torch.equal(noisy_mask(torch.zeros(1, 16, 16), gen(0)), torch.zeros(1, 16, 16))
    with pytest.raises(ValueError, match="at least 8 x 8"):
        noisy_mask(torch.zeros(1, 4, 16), gen(0))


def test_choose_prompt_types_per_generator():
    kinds = choose_prompt_types([gen(seed) for seed in range(60)])
    assert set(kinds) == {"box", "point", "noise_mask"}
    assert kinds == choose_prompt_types([gen(seed) for seed in range(60)])
    assert choose_prompt_types([gen(0), gen(1)], kinds=("box",)) == ["box", "box"]
    with pytest.raises(ValueError, match="empty"):
        choose_prompt_types([gen(0)], kinds=())
    with pytest.raises(ValueError, match="unknown"):
        choose_prompt_types([gen(0)], kinds=("scribble",))


# --- loss -----------------------------------------------------------------------------------------------------


def test_point_sample_at_pixel_centres_is_indexing():
    values = torch.randn(2, 3, 5, 7, generator=gen(0))
    rows, cols = torch.meshgrid(torch.arange(5), torch.arange(7), indexing="ij")
    coords = torch.stack([(cols.flatten() + 0.5) / 7, (rows.flatten() + 0.5) / 5], dim=1)
    sampled = point_sample(values, coords[None].expand(2, -1, -1))
    assert sampled.shape == (2, 3, 35)
    assert torch.allclose(sampled, values.flatten(2), atol=1e-6, rtol=0)


def test_uncertain_points_are_the_most_uncertain_candidates():
    height, width, num_points = 16, 24, 20
    xs = (torch.arange(width) + 0.5) / width
    logits = (xs - 0.3).expand(1, 1, height, width) * 10.0  # zero crossing at x = 0.3
    coords = uncertain_point_coords(logits, num_points, 10.0, 1.0, [gen(5)])
    assert coords.shape == (1, num_points, 2)
    candidates = torch.rand(200, 2, generator=gen(5))
    candidate_abs = point_sample(logits, candidates[None])[0, 0].abs()
    kth_smallest = candidate_abs.sort().values[num_points - 1]
    chosen_abs = point_sample(logits, coords)[0, 0].abs()
    assert (chosen_abs <= kth_smallest).all()
    assert all((candidates == point).all(dim=1).any() for point in coords[0])
    assert (coords[0, :, 0] - 0.3).abs().max() < 0.15


def test_uncertain_points_append_fresh_uniform_points():
    logits = torch.randn(2, 1, 8, 8, generator=gen(0))
    coords = uncertain_point_coords(logits, 10, 3.0, 0.75, [gen(1), gen(2)])
    assert coords.shape == (2, 10, 2) and (coords >= 0).all() and (coords <= 1).all()
    for row, seed in zip(coords, (1, 2)):
        draws = torch.rand(30 + 3, 2, generator=gen(seed))
        assert torch.equal(row[7:], draws[30:])


def test_dice_and_bce_equal_plain_numpy():
    logits = torch.randn(3, 6, generator=gen(0))
    targets = torch.rand(3, 6, generator=gen(1))
    x, t = logits.double().numpy(), targets.double().numpy()
    p = 1.0 / (1.0 + np.exp(-x))
    dice = sum(1 - (2 * (p[i] * t[i]).sum() + 1) / (p[i].sum() + t[i].sum() + 1) for i in range(3)) / 2.0
    bce = sum(np.mean(-(t[i] * np.log(p[i]) + (1 - t[i]) * np.log(1 - p[i]))) for i in range(3)) / 2.0
    assert dice_loss(logits, targets, 2.0).item() == pytest.approx(dice, rel=1e-5)
    assert bce_loss(logits, targets, 2.0).item() == pytest.approx(bce, rel=1e-5)


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_mask_loss_finite_for_empty_and_full_targets_and_has_gradient(fill):
    logits = torch.randn(2, 1, 16, 16, generator=gen(0), requires_grad=True)
    targets = torch.full((2, 1, 64, 64), fill)
    bce, dice = mask_loss(logits, targets, [gen(1), gen(2)], num_points=64)
    assert torch.isfinite(bce) and torch.isfinite(dice)
    (bce + dice).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_batch_loss_is_the_mean_of_single_sample_losses():
    logits = torch.randn(4, 1, 16, 16, generator=gen(0))
    targets = (torch.rand(4, 1, 64, 64, generator=gen(1)) > 0.5).float()
    seeds = [10, 11, 12, 13]
    batch = mask_loss(logits, targets, [gen(seed) for seed in seeds], num_points=100)
    singles = [
        mask_loss(logits[i : i + 1], targets[i : i + 1], [gen(seed)], num_points=100) for i, seed in enumerate(seeds)
    ]
    for term in range(2):
        mean = sum(single[term] for single in singles) / 4
        assert batch[term].item() == pytest.approx(mean.item(), abs=1e-6)
    assert not torch.equal(batch[0], mask_loss(logits, targets, [gen(seed + 1) for seed in seeds], num_points=100)[0])


def test_mask_loss_bad_input():
    logits = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mask_loss(logits, torch.full((2, 1, 8, 8), 255.0), [gen(0), gen(1)], num_points=4)
    with pytest.raises(ValueError, match="one generator per sample"):
        mask_loss(logits, torch.zeros(2, 1, 8, 8), [gen(0)], num_points=4)
    with pytest.raises(ValueError, match="B x 1 x h x w"):
        mask_loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8), [gen(0), gen(1)], num_points=4)
    with pytest.raises(ValueError, match="targets must be B x 1 x H x W"):
        mask_loss(logits, torch.zeros(3, 1, 8, 8), [gen(0), gen(1)], num_points=4)


# --- soft targets -----------------------------------------------------------------------------------------------


def anti_aliased_folder(tmp_path, size: int = 32):
    """A folder source of two samples: an anti-aliased 0/255 disc and the same disc stored 0/1."""
    from PIL import Image

    images, masks = tmp_path / "im", tmp_path / "gt"
    images.mkdir(), masks.mkdir()
    ys, xs = np.mgrid[:size, :size]
    distance = np.hypot(ys - 13.3, xs - 17.6) - 9.0  # negative inside
    gray = np.round(255 * np.clip(0.5 - distance / 2.5, 0, 1)).astype(np.uint8)  # a ~2.5 px soft edge
    for stem, mask in (("aa", gray), ("zero_one", (gray > 128).astype(np.uint8))):
        Image.fromarray(np.full((size, size, 3), 90, np.uint8)).save(images / f"{stem}.jpg")
        Image.fromarray(mask).save(masks / f"{stem}.png")
    return FolderSource("aa", images, masks), gray


def test_folder_samples_keep_the_grayscale_as_the_soft_gt(tmp_path):
    source, gray = anti_aliased_folder(tmp_path)
    anti_aliased, zero_one = source[0], source[1]
    edge = (gray > 0) & (gray < 255)
    assert edge.sum() > 20
    assert anti_aliased.soft.dtype == np.float32 and np.array_equal(anti_aliased.soft, gray.astype(np.float32) / 255)
    assert ((anti_aliased.soft[edge] > 0) & (anti_aliased.soft[edge] < 1)).all()
    assert np.array_equal(anti_aliased.mask, gray > 128)
    assert np.array_equal(zero_one.soft, (gray > 128).astype(np.float32))  # a 0/1 mask's soft GT is 0/1


def test_soft_targets_follow_the_mask_and_the_prompts_stay_binary(tmp_path):
    source, gray = anti_aliased_folder(tmp_path)
    settings = dict(source=source, image_size=32, mask_input_size=(8, 8), seed=3, flip_prob=0.5, num_points=4,
                    prompt_kinds=("box", "point", "noise_mask"))
    identity = dict(settings, scale_range=(1.0, 1.0), flip_prob=0.0)
    soft = TrainingExamples(**identity, target="soft")[(0, 0)]["target"]
    assert torch.equal(soft[0], torch.from_numpy(gray.astype(np.float32) / 255))
    binary = TrainingExamples(**identity, target="binary")[(0, 0)]["target"]
    assert torch.equal(binary[0], torch.from_numpy(gray > 128).float())

    jittered = {target: TrainingExamples(**settings, scale_range=(0.5, 2.0), target=target) for target in TARGETS}
    gt = {"binary": torch.from_numpy(gray > 128).float(), "soft": torch.from_numpy(gray.astype(np.float32) / 255)}
    image = torch.full((3, 32, 32), 90.0)  # the image does not change the masks' augmentation
    kinds = set()
    for epoch in range(6):
        examples = {target: jittered[target][(epoch, 0)] for target in TARGETS}
        for target in TARGETS:  # today's flip and jitter, with the sample's augmentation key
            generator = keyed_generator(3, epoch, 0, AUGMENT_STREAM)
            _, flipped = hflip(image, gt[target][None], generator, p=0.5)
            by_hand = large_scale_jitter(image, flipped, 32, generator, scale_range=(0.5, 2.0))[1]
            assert torch.equal(examples[target]["target"], by_hand)
        assert not torch.equal(examples["soft"]["target"], examples["binary"]["target"])
        assert torch.equal(examples["soft"]["image"], examples["binary"]["image"])
        kind = examples["soft"]["kind"]
        assert kind == examples["binary"]["kind"]
        kinds.add(kind)
        for key in ("box", "points", "mask_input"):  # the prompts come from the binarised mask either way
            if key in examples["binary"]:
                assert torch.equal(examples["soft"][key], examples["binary"][key])
        targets = torch.stack([examples["soft"]["target"], examples["binary"]["target"]])
        bce, dice = mask_loss(torch.zeros(2, 1, 8, 8), targets, [gen(0), gen(1)], num_points=16)  # both accepted
        assert torch.isfinite(bce) and torch.isfinite(dice)
    assert len(kinds) > 1
    with pytest.raises(ValueError, match="target must be one of"):
        TrainingExamples(**identity, target="gray")
