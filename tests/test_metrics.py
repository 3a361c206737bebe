"""hqsam.metrics against a literal OpenCV implementation of the authors' boundary IoU, and batch against single."""

from typing import List, Tuple

import cv2
import numpy as np
import pytest
import torch

from hqsam.metrics import (
    boundary_band,
    boundary_band_torch,
    boundary_dilation,
    boundary_iou,
    boundary_iou_torch,
    mask_iou,
    mask_iou_torch,
)

Pair = Tuple[str, np.ndarray, np.ndarray]


def reference_dilation(height: int, width: int, dilation_ratio: float) -> int:
    return max(1, int(round(dilation_ratio * np.sqrt(height**2 + width**2))))


def reference_band(mask: np.ndarray, dilation: int, looped: bool = False) -> np.ndarray:
    """The authors' procedure: zero pad by 1, cv2.erode with a 3x3 kernel `dilation` times, unpad, subtract.

    `looped` erodes one iteration per call, in case cv2's `iterations` took a shortcut of its own.
    """
    height, width = mask.shape
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    kernel = np.ones((3, 3), dtype=np.uint8)
    if looped:
        eroded = padded
        for _ in range(dilation):
            eroded = cv2.erode(eroded, kernel)
    else:
        eroded = cv2.erode(padded, kernel, iterations=dilation)
    return (mask.astype(np.uint8) - eroded[1 : height + 1, 1 : width + 1]) > 0


def reference_iou(a: np.ndarray, b: np.ndarray) -> float:
    intersection = int(np.sum(a.astype(np.uint8) * b.astype(np.uint8)))
    union = int(np.sum((a.astype(np.uint8) + b.astype(np.uint8)) > 0))
    return 1.0 if union == 0 else intersection / union


def reference_boundary_iou(gt: np.ndarray, pred: np.ndarray, dilation_ratio: float) -> float:
    dilation = reference_dilation(*gt.shape, dilation_ratio)
    return reference_iou(reference_band(gt, dilation), reference_band(pred, dilation))


def blob(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    coarse = rng.random((int(rng.integers(2, 9)), int(rng.integers(2, 9)))).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    return smooth > rng.uniform(0.3, 0.7)


def noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.random((height, width)) < rng.uniform(0.3, 0.97)


def rectangles(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for index in range(int(rng.integers(1, 4))):
        top, bottom = np.sort(rng.integers(0, height + 1, 2))
        left, right = np.sort(rng.integers(0, width + 1, 2))
        mask[top:bottom, left:right] = index < 2  # the third rectangle cuts a hole
    return mask


def prediction_for(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """A prediction near `gt` (shifted, flipped pixels) or an unrelated mask, so scores span 0 to 1."""
    kind = rng.integers(0, 3)
    if kind == 0:
        return np.roll(gt, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
    if kind == 1:
        return gt ^ (rng.random(gt.shape) < 0.02)
    return blob(rng, *gt.shape)


def random_pairs(count: int, seed: int, shape=None) -> List[Pair]:
    rng = np.random.default_rng(seed)
    pairs = []
    for index in range(count):
        height, width = shape or (int(rng.integers(1, 140)), int(rng.integers(1, 140)))
        make = (blob, noise, rectangles)[index % 3]
        gt = make(rng, height, width)
        pairs.append((f"{make.__name__}{index}_{height}x{width}", gt, prediction_for(rng, gt)))
    return pairs


def adversarial_pairs() -> List[Pair]:
    def zeros(height: int, width: int) -> np.ndarray:
        return np.zeros((height, width), dtype=bool)

    def ones(height: int, width: int) -> np.ndarray:
        return np.ones((height, width), dtype=bool)

    def with_true(mask: np.ndarray, index) -> np.ndarray:
        mask = mask.copy()
        mask[index] = True
        return mask

    square_with_hole = with_true(zeros(60, 60), (slice(10, 50), slice(10, 50)))
    square_with_hole[25:35, 25:35] = False
    diagonal = np.eye(50, 70, dtype=bool)
    checker = (np.indices((40, 41)).sum(0) % 2).astype(bool)
    left_half = with_true(zeros(50, 80), (slice(None), slice(0, 40)))
    return [
        ("both empty", zeros(30, 40), zeros(30, 40)),
        ("empty vs full", zeros(30, 40), ones(30, 40)),
        ("full vs empty", ones(30, 40), zeros(30, 40)),
        ("both full", ones(30, 40), ones(30, 40)),
        ("full vs one pixel", ones(30, 40), with_true(zeros(30, 40), (15, 20))),
        ("pixel vs same pixel", with_true(zeros(30, 40), (15, 20)), with_true(zeros(30, 40), (15, 20))),
        ("pixel vs neighbour", with_true(zeros(30, 40), (15, 20)), with_true(zeros(30, 40), (15, 21))),
        ("corner pixels", with_true(zeros(30, 40), (0, 0)), with_true(zeros(30, 40), (29, 39))),
        ("row line vs shifted", with_true(zeros(40, 60), (20, slice(5, 55))), with_true(zeros(40, 60), (21, slice(5, 55)))),
        ("column vs row line", with_true(zeros(40, 60), (slice(None), 30)), with_true(zeros(40, 60), (20, slice(None)))),
        ("diagonal vs its transpose", diagonal, np.eye(50, 70, k=1, dtype=bool)),
        ("hole vs filled", square_with_hole, with_true(zeros(60, 60), (slice(10, 50), slice(10, 50)))),
        ("checkerboard vs inverse", checker, ~checker),
        ("border-touching halves", left_half, ~left_half),
        ("1x1 true/true", ones(1, 1), ones(1, 1)),
        ("1x1 true/false", ones(1, 1), zeros(1, 1)),
        ("1x1 false/false", zeros(1, 1), zeros(1, 1)),
        ("2x3", np.array([[1, 1, 0], [1, 0, 0]], bool), np.array([[1, 1, 1], [0, 0, 0]], bool)),
        ("3x2 full vs corner", ones(3, 2), with_true(zeros(3, 2), (2, 1))),
        ("1x50 line", with_true(zeros(1, 50), (0, slice(3, 30))), with_true(zeros(1, 50), (0, slice(10, 45)))),
        ("50x1 line", with_true(zeros(50, 1), (slice(3, 30), 0)), with_true(zeros(50, 1), (slice(10, 45), 0))),
        ("7x120 strip", rectangles(np.random.default_rng(1), 7, 120), rectangles(np.random.default_rng(2), 7, 120)),
        ("120x7 strip", rectangles(np.random.default_rng(3), 120, 7), rectangles(np.random.default_rng(4), 120, 7)),
        # diagonals 25, 75 and 125 put 0.02 * diagonal at 0.5, 1.5 and 2.5: rounding halves to even matters
        ("15x20 half", blob(np.random.default_rng(5), 15, 20), blob(np.random.default_rng(6), 15, 20)),
        ("45x60 half", blob(np.random.default_rng(7), 45, 60), blob(np.random.default_rng(8), 45, 60)),
        ("75x100 half", blob(np.random.default_rng(9), 75, 100), blob(np.random.default_rng(10), 75, 100)),
    ]


RANDOM_PAIRS = random_pairs(300, seed=0)
ADVERSARIAL_PAIRS = adversarial_pairs()
DILATION_RATIOS = (0.005, 0.02, 0.06, 0.4)  # from d = 1 up to bands that swallow whole images


@pytest.mark.parametrize("dilation_ratio", DILATION_RATIOS)
def test_numpy_metrics_equal_opencv_reference(dilation_ratio):
    for name, gt, pred in RANDOM_PAIRS + ADVERSARIAL_PAIRS:
        assert mask_iou(gt, pred) == reference_iou(gt, pred), name
        expected = reference_boundary_iou(gt, pred, dilation_ratio)
        assert boundary_iou(gt, pred, dilation_ratio) == expected, (name, dilation_ratio)


def test_scores_span_the_range_so_the_comparison_means_something():
    scores = [boundary_iou(gt, pred) for _, gt, pred in RANDOM_PAIRS]
    assert min(scores) < 0.2 and max(scores) > 0.8 and len(set(scores)) > 200


def test_band_equals_repeated_3x3_erosion_and_one_big_square_erosion():
    rng = np.random.default_rng(11)
    for name, mask, _ in RANDOM_PAIRS[:60] + ADVERSARIAL_PAIRS:
        for dilation in (1, 2, int(rng.integers(3, 12)), max(mask.shape)):
            band = boundary_band(mask, dilation)
            assert band.dtype == np.bool_ and band.shape == mask.shape
            assert np.array_equal(band, reference_band(mask, dilation, looped=True)), (name, dilation)
            assert np.array_equal(band, reference_band(mask, dilation)), (name, dilation)
            size = 2 * dilation + 1
            padded = np.pad(mask.astype(np.uint8), dilation)
            square = cv2.erode(padded, np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
            assert np.array_equal(band, mask & (square[dilation:-dilation, dilation:-dilation] == 0)), (name, dilation)


@pytest.mark.parametrize("shape", [(450, 3001), (3001, 450)])
def test_wide_bands_on_long_images(shape):
    rng = np.random.default_rng(12)
    mask = np.ones(shape, dtype=bool)  # mostly true, so that wide windows still survive erosion in places
    mask[tuple(rng.integers(0, shape, (40, 2)).T)] = False
    for dilation in (1, 127, 200):
        band = boundary_band(mask, dilation)
        assert np.array_equal(band, reference_band(mask, dilation)), dilation
        assert np.array_equal(boundary_band_torch(torch.from_numpy(mask)[None], dilation)[0].numpy(), band), dilation


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (15, 20), (45, 60), (75, 100), (1024, 1024), (480, 640), (3000, 7)])
@pytest.mark.parametrize("dilation_ratio", (0.0, 0.02, 0.5))
def test_boundary_dilation(shape, dilation_ratio):
    assert boundary_dilation(*shape, dilation_ratio) == reference_dilation(*shape, dilation_ratio)


def test_empty_masks_give_documented_finite_values():
    empty, full = np.zeros((8, 9), bool), np.ones((8, 9), bool)
    assert mask_iou(empty, empty) == 1.0 and boundary_iou(empty, empty) == 1.0
    assert mask_iou(empty, full) == 0.0 and boundary_iou(full, empty) == 0.0
    both_empty = torch.zeros(2, 8, 9, dtype=torch.bool)
    assert mask_iou_torch(both_empty, both_empty).tolist() == [1.0, 1.0]
    assert boundary_iou_torch(both_empty, both_empty).tolist() == [1.0, 1.0]


def test_integer_masks_score_like_bool():
    for name, gt, pred in RANDOM_PAIRS[:30] + ADVERSARIAL_PAIRS:
        as_ints = gt.astype(np.uint8), pred.astype(np.int64)
        assert mask_iou(*as_ints) == mask_iou(gt, pred), name
        assert boundary_iou(*as_ints) == boundary_iou(gt, pred), name


def batches() -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """Same-shape stacks: random masks of a few shapes, and each adversarial pair with its swapped twin."""
    stacked = []
    for seed, shape in enumerate([(1, 1), (2, 3), (37, 53), (96, 64), (128, 128)]):
        pairs = random_pairs(12, seed=100 + seed, shape=shape)
        stacked.append((f"random {shape}", np.stack([p[1] for p in pairs]), np.stack([p[2] for p in pairs])))
    for name, gt, pred in ADVERSARIAL_PAIRS:
        stacked.append((name, np.stack([gt, pred]), np.stack([pred, gt])))
    return stacked


@pytest.mark.parametrize("dilation_ratio", DILATION_RATIOS)
def test_torch_batch_equals_numpy_exactly(dilation_ratio):
    for name, gts, preds in batches():
        gt_tensor, pred_tensor = torch.from_numpy(gts), torch.from_numpy(preds)
        ious = mask_iou_torch(gt_tensor, pred_tensor)
        boundary_ious = boundary_iou_torch(gt_tensor, pred_tensor, dilation_ratio)
        for scores in (ious, boundary_ious):
            assert scores.dtype == torch.float64 and scores.shape == (len(gts),), name
        assert ious.tolist() == [mask_iou(g, p) for g, p in zip(gts, preds)], name
        expected = [boundary_iou(g, p, dilation_ratio) for g, p in zip(gts, preds)]
        assert boundary_ious.tolist() == expected, (name, dilation_ratio)


def test_torch_band_equals_numpy_band():
    for name, gts, _ in batches():
        for dilation in (1, 3, 40):
            bands = boundary_band_torch(torch.from_numpy(gts), dilation)
            assert bands.dtype == torch.bool, name
            assert np.array_equal(bands.numpy(), np.stack([boundary_band(g, dilation) for g in gts])), (name, dilation)


def test_torch_counts_exact_on_rows_longer_than_2_to_the_15():
    rng = np.random.default_rng(13)
    gts = rng.random((2, 4, 33_000)) < 0.9999
    preds = rng.random((2, 4, 33_000)) < 0.9999
    gt_tensor, pred_tensor = torch.from_numpy(gts), torch.from_numpy(preds)
    assert mask_iou_torch(gt_tensor, pred_tensor).tolist() == [mask_iou(g, p) for g, p in zip(gts, preds)]
    expected = [boundary_iou(g, p, 1e-4) for g, p in zip(gts, preds)]
    assert boundary_iou_torch(gt_tensor, pred_tensor, 1e-4).tolist() == expected


def test_torch_accepts_01_integers_and_empty_batches():
    _, gts, preds = batches()[2]
    expected = boundary_iou_torch(torch.from_numpy(gts), torch.from_numpy(preds))
    as_ints = torch.from_numpy(gts.astype(np.uint8)), torch.from_numpy(preds.astype(np.int64))
    assert torch.equal(boundary_iou_torch(*as_ints), expected)
    no_masks = torch.zeros(0, 5, 6, dtype=torch.bool)
    assert boundary_iou_torch(no_masks, no_masks).shape == (0,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    for name, gts, preds in batches():
        gt_tensor, pred_tensor = torch.from_numpy(gts), torch.from_numpy(preds)
        on_cuda = boundary_iou_torch(gt_tensor.cuda(), pred_tensor.cuda())
        assert on_cuda.device.type == "cuda", name
        assert torch.equal(on_cuda.cpu(), boundary_iou_torch(gt_tensor, pred_tensor)), name
        on_cuda = mask_iou_torch(gt_tensor.cuda(), pred_tensor.cuda())
        assert torch.equal(on_cuda.cpu(), mask_iou_torch(gt_tensor, pred_tensor)), name


def test_numpy_bad_inputs_raise():
    mask = np.zeros((4, 5), bool)
    with pytest.raises(ValueError, match=r"\(4, 5\) and \(5, 4\)"):
        mask_iou(mask, mask.T)
    with pytest.raises(ValueError, match=r"H x W.*\(1, 4, 5\)"):
        boundary_iou(mask[None], mask[None])
    with pytest.raises(ValueError, match="mask > 128"):
        boundary_iou(np.eye(4, 5, dtype=np.uint8) * 255, mask)
    with pytest.raises(ValueError, match="binarise"):
        mask_iou(mask, mask.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[-1, 0\]"):
        mask_iou(mask, -np.eye(4, 5, dtype=np.int8))
    with pytest.raises(ValueError, match="empty"):
        mask_iou(np.zeros((0, 5), bool), np.zeros((0, 5), bool))
    for ratio in (-0.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="dilation_ratio"):
            boundary_iou(mask, mask, ratio)
    for dilation in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="dilation must be an integer"):
            boundary_band(mask, dilation)


def test_torch_bad_inputs_raise():
    masks = torch.zeros(2, 4, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"mask\[None\]"):
        boundary_iou_torch(masks[0], masks[0])
    with pytest.raises(TypeError, match="torch.Tensor"):
        mask_iou_torch(masks.numpy(), masks)
    with pytest.raises(ValueError, match=r"\(2, 4, 5\) and \(2, 5, 4\)"):
        boundary_iou_torch(masks, masks.transpose(1, 2))
    with pytest.raises(ValueError, match="mask > 128"):
        boundary_iou_torch(masks, torch.eye(4, 5, dtype=torch.uint8).expand(2, 4, 5) * 255)
    with pytest.raises(ValueError, match="binarise"):
        mask_iou_torch(masks.float(), masks)
    with pytest.raises(ValueError, match="empty images"):
        mask_iou_torch(torch.zeros(2, 0, 5, dtype=torch.bool), torch.zeros(2, 0, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="dilation must be an integer"):
        boundary_band_torch(masks, 0)
