"""Robustness studies (box noise, point prompts) and the speed/size measurement, on the toy model and world."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

import hqsam
from hqsam.data import TOY_LAYOUT, Sample, read_layout
from hqsam.eval.hq_benchmark import evaluate_hq_datasets, summarize
from hqsam.eval.robustness import (
    evaluate_box_noise,
    evaluate_points,
    interior_point,
    noisy_boxes,
    point_prompts,
    squared_distance_transform,
)
from hqsam.eval.speed import backbone_sizes, measure_speed
from hqsam.report import paper_table
from hqsam.seeding import keyed_generator
from hqsam.toy import generate_toy_world


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = generate_toy_world(tmp_path_factory.mktemp("world"), num_train=0, num_val=2)
    return read_layout(root, TOY_LAYOUT, split="val")


def random_boxes(rng: np.random.Generator, count: int, low: float, high: float) -> torch.Tensor:
    corners = rng.uniform(low, high, size=(count, 2, 2))
    return torch.tensor(np.concatenate([corners.min(1), corners.max(1)], axis=1), dtype=torch.float32)


def brute_squared_distance(mask: np.ndarray) -> np.ndarray:
    background = np.argwhere(~mask)
    if len(background) == 0:
        return np.full(mask.shape, -1)
    rows, columns = np.indices(mask.shape)
    squared = (rows[..., None] - background[:, 0]) ** 2 + (columns[..., None] - background[:, 1]) ** 2
    return squared.min(-1)


def random_masks(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        height, width = (int(side) for side in rng.integers(1, 16, 2))
        yield rng.random((height, width)) < rng.uniform(0.2, 1.0)


@pytest.mark.parametrize("style", ["dn_detr", "corners"])
def test_noisy_boxes_scale_zero_is_identity(style):
    boxes = random_boxes(np.random.default_rng(0), 20, 0, 255).round()
    assert torch.equal(noisy_boxes(boxes, 0.0, keyed_generator(0, "x", 1), (256, 256), style), boxes)


@pytest.mark.parametrize("scale", [0.2, 0.4, 1.0])
def test_noisy_boxes_follow_dn_detr_formulas(scale):
    # Boxes far from the border, so nothing is clipped: compare with the formulas written out in NumPy.
    boxes = random_boxes(np.random.default_rng(1), 50, 400, 600)
    uniform = (torch.rand(boxes.shape, generator=keyed_generator(3), dtype=torch.float64) * 2 - 1).numpy()
    x0, y0, x1, y1 = boxes.double().numpy().T
    w, h = x1 - x0, y1 - y0

    corners = noisy_boxes(boxes, scale, keyed_generator(3), (1000, 1000), "corners").double().numpy()
    shift = corners - boxes.double().numpy()
    assert np.all(np.abs(shift) <= scale * np.stack([w, h, w, h], 1) / 2 + 1e-4)
    np.testing.assert_allclose(shift, uniform * scale * np.stack([w, h, w, h], 1) / 2, atol=1e-4)

    dn = noisy_boxes(boxes, scale, keyed_generator(3), (1000, 1000), "dn_detr").double().numpy()
    centre_x, centre_y = (x0 + x1) / 2 + uniform[:, 0] * scale * w / 2, (y0 + y1) / 2 + uniform[:, 1] * scale * h / 2
    new_w, new_h = w * (1 + uniform[:, 2] * scale), h * (1 + uniform[:, 3] * scale)
    expected = np.stack([centre_x - new_w / 2, centre_y - new_h / 2, centre_x + new_w / 2, centre_y + new_h / 2], 1)
    np.testing.assert_allclose(dn, expected, atol=1e-4)
    assert np.all(np.abs(dn - boxes.double().numpy()) <= scale * np.stack([w, h, w, h], 1) + 1e-4)


@pytest.mark.parametrize("style", ["dn_detr", "corners"])
@pytest.mark.parametrize("scale", [0.4, 1.5, 3.0])
def test_noisy_boxes_are_valid_and_inside_the_image(style, scale):
    boxes = random_boxes(np.random.default_rng(2), 200, 0, 99)
    noisy = noisy_boxes(boxes, scale, keyed_generator(0, "y"), (100, 120), style)
    assert noisy.shape == boxes.shape and noisy.dtype == boxes.dtype
    assert torch.all(noisy >= 0)
    assert torch.all(noisy[:, [0, 2]] <= 120) and torch.all(noisy[:, [1, 3]] <= 100)
    assert torch.all(noisy[:, 0] <= noisy[:, 2]) and torch.all(noisy[:, 1] <= noisy[:, 3])
    assert not torch.equal(noisy, boxes)


def test_noise_is_deterministic_per_key():
    boxes = random_boxes(np.random.default_rng(3), 4, 10, 90)
    first = noisy_boxes(boxes, 0.4, keyed_generator(0, "Toy-DIS", 5), (100, 100))
    assert torch.equal(first, noisy_boxes(boxes, 0.4, keyed_generator(0, "Toy-DIS", 5), (100, 100)))
    for other in [(1, "Toy-DIS", 5), (0, "Toy-COIFT", 5), (0, "Toy-DIS", 6)]:
        assert not torch.equal(first, noisy_boxes(boxes, 0.4, keyed_generator(*other), (100, 100)))


def test_noisy_boxes_reject_bad_input():
    with pytest.raises(ValueError, match="scale"):
        noisy_boxes(torch.zeros(1, 4), -0.1, torch.Generator(), (10, 10))
    with pytest.raises(ValueError, match="style"):
        noisy_boxes(torch.zeros(1, 4), 0.1, torch.Generator(), (10, 10), "gaussian")
    with pytest.raises(ValueError, match="B x 4"):
        noisy_boxes(torch.zeros(4), 0.1, torch.Generator(), (10, 10))


def test_distance_transform_equals_brute_force():
    special = [np.ones((1, 1), bool), np.zeros((3, 4), bool), np.ones((5, 7), bool), np.eye(6, dtype=bool)]
    one_pixel = np.zeros((6, 9), bool)
    one_pixel[0, 8] = True
    one_hole = np.ones((7, 5), bool)
    one_hole[6, 0] = False
    for mask in itertools.chain(special, [one_pixel, one_hole, ~one_pixel], random_masks(0, 300)):
        np.testing.assert_array_equal(squared_distance_transform(mask), brute_squared_distance(mask), err_msg=str(mask))


def test_distance_transform_on_a_larger_mask():
    rows, columns = np.indices((40, 70))
    mask = ((rows - 18) ** 2 + (columns - 30) ** 2 < 15**2) | (columns > 60)
    mask[np.random.default_rng(0).random(mask.shape) < 0.02] = False
    np.testing.assert_array_equal(squared_distance_transform(mask), brute_squared_distance(mask))


def test_interior_point_is_the_first_farthest_pixel():
    for mask in itertools.chain(random_masks(1, 200), [np.ones((4, 6), bool), np.ones((1, 1), bool)]):
        if not mask.any():
            continue
        x, y = interior_point(mask)
        assert mask[y, x]
        # The border counts as background: the brute force sees the mask inside a ring of background.
        distance = brute_squared_distance(np.pad(mask, 1))[1:-1, 1:-1]
        farthest = np.argwhere(distance == distance.max())
        assert (y, x) == tuple(farthest[0])  # argwhere is row-major


def test_interior_point_of_a_square_is_its_centre():
    mask = np.zeros((20, 30), bool)
    mask[4:11, 10:17] = True
    assert interior_point(mask) == (13, 7)


def test_interior_point_rejects_empty_and_non_binary_masks():
    with pytest.raises(ValueError, match="no foreground"):
        interior_point(np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="boolean"):
        interior_point(np.full((3, 3), 0.7))


def test_point_prompts_place_and_count_points():
    mask = np.zeros((40, 50), bool)
    mask[5:30, 10:45] = True
    for positive, negative in [(1, 0), (1, 5), (3, 0), (10, 5)]:
        coords, labels = point_prompts(mask, positive, negative, keyed_generator(positive, negative))
        assert coords.shape == (positive + negative, 2) and labels.tolist() == [1.0] * positive + [0.0] * negative
        xs, ys = coords.long().T
        assert mask[ys[:positive], xs[:positive]].all() and not mask[ys[positive:], xs[positive:]].any()
        assert len({tuple(point) for point in coords.tolist()}) == len(coords)  # distinct
    coords, _ = point_prompts(mask, 1, 0, torch.Generator())
    assert tuple(coords[0].long().tolist()) == interior_point(mask)


def test_point_prompts_are_deterministic_per_generator():
    mask = np.zeros((30, 30), bool)
    mask[3:25, 4:20] = True
    first = point_prompts(mask, 5, 5, keyed_generator(0, "a", 1, 0))
    again = point_prompts(mask, 5, 5, keyed_generator(0, "a", 1, 0))
    other = point_prompts(mask, 5, 5, keyed_generator(0, "a", 1, 1))
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], other[0])


def test_point_prompts_give_fewer_points_on_tiny_masks():
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = mask[2, 2] = True
    coords, labels = point_prompts(mask, 10, 20, torch.Generator().manual_seed(0))
    assert labels.tolist() == [1.0, 1.0] + [0.0] * 14
    assert sorted(map(tuple, coords[:2].long().tolist())) == [(2, 1), (2, 2)]
    with pytest.raises(ValueError, match="no foreground"):
        point_prompts(np.zeros((4, 4), bool), 1, 0, torch.Generator())
    with pytest.raises(ValueError, match="at least 1"):
        point_prompts(mask, 0, 5, torch.Generator())


def test_box_noise_at_scale_zero_is_the_hq_benchmark(toy_model, sources):
    clean = evaluate_hq_datasets(toy_model, sources, progress=False)
    rows = evaluate_box_noise(toy_model, sources, scales=(0.0, 0.4), progress=False)
    assert list(rows.columns) == ["dataset", "image", "model", "noise_scale", "iou", "biou"]
    assert len(rows) == 2 * len(clean)
    at_zero = rows[rows["noise_scale"] == 0.0].drop(columns="noise_scale").reset_index(drop=True)
    pd.testing.assert_frame_equal(at_zero, clean)
    noisy = rows[rows["noise_scale"] == 0.4].reset_index(drop=True)
    assert not np.allclose(noisy["biou"], clean["biou"])


def test_box_noise_does_not_depend_on_how_many_images_run(toy_model, sources):
    kwargs = dict(scales=(0.4,), seed=7, images_per_pass=1, progress=False)
    first = evaluate_box_noise(toy_model, sources[:1], max_images=1, **kwargs)
    both = evaluate_box_noise(toy_model, sources[:1], **kwargs)
    pd.testing.assert_frame_equal(first, both.iloc[: len(first)])


def test_points_rows_per_setting_and_trial(toy_model, sources):
    settings = ((1, 0), (3, 0), (2, 2))
    rows = evaluate_points(toy_model, sources[:2], settings=settings, trials=2, max_images=1, progress=False)
    assert list(rows.columns) == ["dataset", "image", "model", "pos_points", "neg_points", "trial", "iou", "biou"]
    counts = rows.groupby(["dataset", "model", "pos_points", "neg_points"])["trial"].agg(list)
    assert len(counts) == 2 * 2 * len(settings)
    for (_, _, positive, negative), trials in counts.items():
        assert trials == ([0] if (positive, negative) == (1, 0) else [0, 1])
    assert rows[["iou", "biou"]].apply(lambda column: column.between(0, 1)).all().all()


class OneSampleSource:
    name = "tiny"

    def __init__(self, mask: np.ndarray):
        self.sample = Sample(np.zeros(mask.shape + (3,), np.uint8), mask, "tiny/0")

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> Sample:
        return self.sample


def test_points_skip_images_whose_resized_gt_is_empty_and_say_so(toy_model):
    mask = np.zeros((2000, 2000), bool)
    mask[1000, 1000] = True  # one pixel of 2000 x 2000 vanishes at 256 x 256
    with pytest.warns(UserWarning, match="tiny/0"):
        rows = evaluate_points(toy_model, [OneSampleSource(mask)], settings=((1, 0),), progress=False)
    assert rows.empty


def test_points_reject_bad_settings(toy_model, sources):
    with pytest.raises(ValueError, match="at least 1"):
        evaluate_points(toy_model, sources, settings=((0, 5),), progress=False)
    with pytest.raises(ValueError, match="trials"):
        evaluate_points(toy_model, sources, trials=0, progress=False)


def test_summary_is_the_mean_of_dataset_means():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(
        [{"dataset": dataset, "image": f"{dataset}/{i}", "model": model, "noise_scale": scale,
          "iou": rng.random(), "biou": rng.random()}
         for dataset, count in (("A", 3), ("B", 5)) for i in range(count)
         for model in ("HQ-SAM", "SAM") for scale in (0.0, 0.2)]
    )
    table = summarize(rows, "noise_scale")
    assert list(table.index) == [("SAM", 0.0), ("SAM", 0.2), ("HQ-SAM", 0.0), ("HQ-SAM", 0.2)]
    for (model, scale), row in table.iterrows():
        picked = rows[(rows["model"] == model) & (rows["noise_scale"] == scale)]
        per_dataset = [100 * picked[picked["dataset"] == d]["biou"].mean() for d in ("A", "B")]
        assert row["B mBIoU"] == pytest.approx(per_dataset[1])
        assert row["average mBIoU"] == pytest.approx(np.mean(per_dataset))
        assert row["average mBIoU"] != pytest.approx(100 * picked["biou"].mean())  # not the pooled mean
    with pytest.raises(ValueError, match="pos_points"):
        summarize(rows, ["pos_points"])


def test_measure_speed_on_the_cpu():
    result = measure_speed("toy", "cpu", repeats=2, warmup=1)
    model = hqsam.build_hqsam("toy")
    hq = sum(p.numel() for name, p in model.named_parameters() if hqsam.is_hq_parameter(name))
    total = sum(p.numel() for p in model.parameters())
    assert result["HQ-SAM"]["params_learnable"] == hq > 0
    assert result["HQ-SAM"]["params_learnable_mb"] == pytest.approx(hq * 4 / 2**20)
    assert result["HQ-SAM"]["params_total_mb"] == pytest.approx(total * 4 / 2**20)
    assert result["SAM"]["params_total_mb"] == result["SAM"]["params_learnable_mb"] == pytest.approx(
        (total - hq) * 4 / 2**20
    )
    for name in ("SAM", "HQ-SAM"):
        assert result[name]["fps"] > 0 and len(result[name]["seconds_all"]) == 2
        assert result[name]["fps"] == pytest.approx(1 / np.median(result[name]["seconds_all"]))
        assert result[name]["peak_memory_gb"] is None
    with pytest.raises(ValueError, match="repeats"):
        measure_speed(repeats=0)


def test_backbone_sizes_match_the_papers_table10():
    rows = backbone_sizes()
    paper = paper_table("table10").set_index(["model", "backbone"])["params_learnable_mb"]
    assert [(r["model"], r["backbone"]) for r in rows] == [(m, b) for b in ("vit_b", "vit_l", "vit_h") for m in ("SAM", "HQ-SAM")]
    for row in rows:
        assert row["params_learnable_mb"] == pytest.approx(paper[(row["model"], row["backbone"])], abs=0.6)
    hq_vit_b = [r for r in rows if r["model"] == "HQ-SAM" and r["backbone"] == "vit_b"][0]
    assert hq_vit_b["params_learnable_mb"] == 1_071_104 * 4 / 2**20  # the authors' release's HQ parts
