import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from hqsam import HQSam, build_hqsam
from hqsam.data.sources import Sample
from hqsam.decoding import predict_box_masks
from hqsam.figures import (
    MODEL_COLOURS,
    box_noise_curve,
    overlay,
    points_curve,
    qualitative_grid,
    save_figure,
    training_curves,
    zoom_window,
)
from hqsam.eval import summarize
from hqsam.metrics import boundary_iou, mask_iou
from hqsam.prompts import boxes_from_masks
from hqsam.report import paired_bootstrap


def _sample(index: int, size: int = 40) -> Sample:
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - 15) ** 2 + (xx - 20 - index) ** 2 < 64
    mask[22:36, 19:21] = True
    rng = np.random.default_rng(index)
    image = (rng.random((size, size, 3)) * 60 + mask[..., None] * 150).astype(np.uint8)
    return Sample(image, mask, f"toy/{index}")


@pytest.fixture(scope="module")
def model() -> HQSam:
    torch.manual_seed(0)
    return build_hqsam("toy")


def _box_noise_summary() -> pd.DataFrame:
    rows = [
        {"model": model, "noise_scale": scale, "average mIoU": base - 30 * scale, "average mBIoU": base - 9 - 40 * scale}
        for model, base in (("SAM", 70.0), ("HQ-SAM", 81.0))
        for scale in (0.4, 0.0, 0.2)  # unsorted on purpose
    ]
    return pd.DataFrame(rows).set_index(["model", "noise_scale"])


def _points_summary() -> pd.DataFrame:
    rows = []
    for model, base in (("SAM", 50.0), ("HQ-SAM", 58.0)):
        for positives, negatives in ((1, 0), (3, 0), (5, 0), (5, 5), (10, 0), (10, 5)):
            rows.append({"model": model, "pos_points": positives, "neg_points": negatives,
                         "COIFT mBIoU": base + positives + negatives / 10, "COIFT mIoU": 90.0,
                         "average mBIoU": 0.0, "average mIoU": 0.0})
    return pd.DataFrame(rows).set_index(["model", "pos_points", "neg_points"])


def _paper_fig5() -> pd.DataFrame:
    rows = [{"dataset": dataset, "model": model, "pos_points": p, "neg_points": n, "mbiou": 10.0 * p + n + len(model)}
            for dataset in ("COIFT", "DIS-VD") for model in ("SAM", "HQ-SAM") for p, n in ((1, 0), (3, 0), (5, 5))]
    return pd.DataFrame(rows)


def _logs(num_steps: int = 40, num_epochs: int = 4):
    rng = np.random.default_rng(0)
    steps = pd.DataFrame({
        "step": np.arange(1, num_steps + 1),
        "epoch": np.repeat(np.arange(1, num_epochs + 1), num_steps // num_epochs),
        "bce": rng.random(num_steps),
        "dice": rng.random(num_steps),
        "lr": np.where(np.arange(num_steps) < 30, 1e-3, 1e-4),  # drops at step 31, the first step of epoch 4
        "samples_per_s": 2.0,
    })
    steps["loss"] = steps["bce"] + steps["dice"]
    epochs = pd.DataFrame({"epoch": np.arange(1, num_epochs + 1), "train_loss": 1.0,
                           "HQ-SAM average mIoU": [60.0, np.nan, 70.0, 75.0], "HQ-SAM average mBIoU": [50.0, np.nan, 55.0, 58.0],
                           "SAM average mIoU": [65.0, np.nan, 65.0, 65.0], "SAM average mBIoU": [52.0, np.nan, 52.0, 52.0]})
    return steps, epochs


def _assert_labelled(fig: Figure) -> None:
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()


def test_zoom_window_against_brute_force():
    errors = np.random.default_rng(1).random((23, 31)) < 0.2
    for size in (1, 5, 23, 40):
        x0, y0, x1, y1 = zoom_window(errors, size)
        assert 0 <= x0 < x1 <= 31 and 0 <= y0 < y1 <= 23
        assert (x1 - x0, y1 - y0) == (min(size, 31), min(size, 23))
        best = max(errors[y : y + y1 - y0, x : x + x1 - x0].sum() for y in range(24 - (y1 - y0)) for x in range(32 - (x1 - x0)))
        assert errors[y0:y1, x0:x1].sum() == best
    assert zoom_window(np.zeros((10, 10), bool), 4) == (3, 3, 7, 7)
    with pytest.raises(ValueError, match="at least 1"):
        zoom_window(errors, 0)


def test_qualitative_grid(model):
    samples = [_sample(0), _sample(3)]
    boxes = [boxes_from_masks(torch.from_numpy(sample.mask)[None, None].float())[0].numpy() for sample in samples]
    predicted = predict_box_masks(model, [sample.image for sample in samples], [box[None] for box in boxes],
                                  hq_token_only=True)
    masks = [{name: per_box[0] for name, per_box in per_image.items()} for per_image in predicted]
    fig = qualitative_grid(samples, masks, boxes)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 5
    assert len(fig.legends) == 1
    axes = np.array(fig.axes).reshape(2, 5)
    for row, (sample, box) in enumerate(zip(samples, boxes)):
        sam, hq = masks[row]["SAM"], masks[row]["HQ-SAM"]
        # The box prompt as drawn is the one given; the titles carry the scores of the masks given.
        prompt = axes[row, 0].patches[0]
        assert (prompt.get_x(), prompt.get_y(), prompt.get_width(), prompt.get_height()) == (
            box[0], box[1], box[2] - box[0], box[3] - box[1])
        assert f"IoU {100 * mask_iou(sample.mask, sam):.1f}, BIoU {100 * boundary_iou(sample.mask, sam):.1f}" in axes[row, 2].get_title()
        assert f"IoU {100 * mask_iou(sample.mask, hq):.1f}" in axes[row, 3].get_title()
        # The zoom window lies in the image, holds a disagreement pixel, and the zoom panel shows that crop.
        window = axes[row, 0].patches[1]
        x0, y0 = int(window.get_x() + 0.5), int(window.get_y() + 0.5)
        x1, y1 = x0 + int(window.get_width()), y0 + int(window.get_height())
        assert 0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 40
        disagreement = (sam != sample.mask) | (hq != sample.mask)
        assert disagreement[y0:y1, x0:x1].any()
        np.testing.assert_array_equal(axes[row, 4].images[0].get_array(), sample.image[y0:y1, x0:x1])


def test_qualitative_grid_draws_the_masks_it_is_given():
    sample = _sample(0)
    exact, shifted = sample.mask, np.roll(sample.mask, 3, axis=1)
    plain = qualitative_grid([sample], [{"SAM": shifted, "HQ-SAM": exact}], [np.array([2, 2, 30, 38])], zoom=False)
    assert len(plain.axes) == 4 and len(plain.axes[0].patches) == 1
    assert plain.axes[3].get_title() == "HQ-SAM\nIoU 100.0, BIoU 100.0"
    assert plain.axes[2].get_title().startswith(f"SAM\nIoU {100 * mask_iou(exact, shifted):.1f}")
    for ax, (name, mask) in zip(plain.axes[2:], (("SAM", shifted), ("HQ-SAM", exact))):
        np.testing.assert_array_equal(ax.images[0].get_array(), overlay(sample.image, mask, MODEL_COLOURS[name]))
    with pytest.raises(ValueError, match="one mapping and one box per sample"):
        qualitative_grid([sample, sample], [{"SAM": exact, "HQ-SAM": exact}] * 2, [np.array([0, 0, 5, 5])])
    with pytest.raises(ValueError, match=r"no mask for \['HQ-SAM'\]"):
        qualitative_grid([sample], [{"SAM": exact}], [np.array([0, 0, 5, 5])])
    with pytest.raises(ValueError, match="must be H x W as its GT"):
        qualitative_grid([sample], [{"SAM": exact, "HQ-SAM": exact[:-1]}], [np.array([0, 0, 5, 5])])


def test_box_noise_curve_plots_the_summary_and_the_paper():
    summary = _box_noise_summary()
    paper = pd.DataFrame({
        "model": ["SAM", "SAM", "HQ-SAM", "HQ-SAM"], "noise_scale": [0.0, 0.4, 0.0, 0.4],
        "hq4_miou": [79.5, 46.4, 89.1, 69.9], "hq4_mbiou": [71.1, 39.8, 81.8, 60.3]})
    fig = box_noise_curve(summary, paper)
    assert len(fig.axes) == 2
    _assert_labelled(fig)
    assert "boundary" in fig.axes[0].get_ylabel() and "%" in fig.axes[0].get_ylabel()
    for ax, column, paper_column in ((fig.axes[0], "average mBIoU", "hq4_mbiou"), (fig.axes[1], "average mIoU", "hq4_miou")):
        assert ax.get_legend() is not None
        assert [line.get_label() for line in ax.lines] == ["SAM (ours)", "HQ-SAM (ours)", "SAM (paper)", "HQ-SAM (paper)"]
        for line, model in zip(ax.lines[:2], ("SAM", "HQ-SAM")):
            np.testing.assert_allclose(line.get_xdata(), [0.0, 0.2, 0.4])
            expected = [summary.loc[(model, scale), column] for scale in (0.0, 0.2, 0.4)]
            np.testing.assert_allclose(line.get_ydata(), expected)
        for line, model in zip(ax.lines[2:], ("SAM", "HQ-SAM")):
            assert line.get_linestyle() == "--"
            np.testing.assert_allclose(line.get_ydata(), paper.loc[paper["model"] == model, paper_column])
    assert len(box_noise_curve(summary).axes[0].lines) == 2
    with pytest.raises(ValueError, match="indexed by"):
        box_noise_curve(summary.reset_index())


def _study_rows(by, settings, models=("SAM", "HQ-SAM")) -> pd.DataFrame:
    # Per-image rows of two datasets, 5 images each, 2 trials, at every setting (a tuple of the `by` values).
    rng = np.random.default_rng(2)
    return pd.DataFrame([
        {"dataset": dataset, "image": f"{dataset}/{i}", "model": model, **dict(zip(by, setting)), "trial": trial,
         "iou": rng.random(), "biou": rng.random()}
        for dataset in ("COIFT", "DIS5K-VD") for i in range(5) for setting in settings for model in models
        for trial in range(2)
    ])


def _bars(collection) -> list:
    # A LineCollection of vertical bars as (x, low, high), by x.
    return sorted((segment[0, 0], segment[0, 1], segment[1, 1]) for segment in collection.get_segments())


def test_box_noise_curve_draws_each_models_interval_as_bars():
    rows = _study_rows(["noise_scale"], [(0.0,), (0.2,), (0.4,)])
    summary = summarize(rows, "noise_scale")
    intervals = paired_bootstrap(rows, "noise_scale", resamples=200)
    plain, fig = box_noise_curve(summary), box_noise_curve(summary, intervals=intervals)
    for ax, bare, metric in zip(fig.axes, plain.axes, ("mBIoU", "mIoU")):
        assert [line.get_label() for line in ax.lines] == [line.get_label() for line in bare.lines]
        assert not bare.collections and len(ax.collections) == 2 and not ax.containers
        for collection, line, model in zip(ax.collections, ax.lines, ("SAM", "HQ-SAM")):
            assert isinstance(collection, LineCollection)
            np.testing.assert_allclose(collection.get_colors()[0][:3], to_rgb(MODEL_COLOURS[model]))
            average = intervals.xs(("average", metric), level=["dataset", "metric"])
            expected = [(scale, average.loc[scale, f"{model} low"], average.loc[scale, f"{model} high"])
                        for scale in (0.0, 0.2, 0.4)]
            np.testing.assert_allclose(_bars(collection), expected)
            assert all(low <= y <= high for (_, low, high), y in zip(expected, line.get_ydata()))
    with pytest.raises(ValueError, match="indexed by"):
        box_noise_curve(summary, intervals=paired_bootstrap(rows, resamples=10))


def test_points_curve_draws_our_intervals_as_bars():
    settings = [(1, 0), (3, 0), (5, 5)]
    rows = _study_rows(["pos_points", "neg_points"], settings)
    summary = summarize(rows, ["pos_points", "neg_points"])
    intervals = paired_bootstrap(rows, ["pos_points", "neg_points"], resamples=200)
    plain, fig = points_curve(summary, _paper_fig5()), points_curve(summary, _paper_fig5(), intervals=intervals)
    assert [ax.get_title() for ax in fig.axes] == ["COIFT", "DIS5K-VD (paper: DIS-VD)"]
    for ax, bare, dataset in zip(fig.axes, plain.axes, ("COIFT", "DIS5K-VD")):
        assert [line.get_label() for line in ax.lines] == [line.get_label() for line in bare.lines]
        assert not bare.collections and len(ax.collections) == 4  # per model: positives only, with negatives
        ours = intervals.xs((dataset, "mBIoU"), level=["dataset", "metric"])
        for collection, (model, settings_here) in zip(
            ax.collections, [(m, s) for m in ("SAM", "HQ-SAM") for s in (settings[:2], settings[2:])]
        ):
            expected = [(p, ours.loc[(p, n), f"{model} low"], ours.loc[(p, n), f"{model} high"]) for p, n in settings_here]
            np.testing.assert_allclose(_bars(collection), expected)


def test_points_curve_panels_lines_and_paper():
    summary, paper = _points_summary(), _paper_fig5()
    fig = points_curve(summary, paper)
    assert [ax.get_title() for ax in fig.axes] == ["COIFT", "DIS-VD"]  # ours, then the paper's other dataset
    _assert_labelled(fig)
    assert len(fig.legends) == 1
    coift = fig.axes[0]
    labels = [line.get_label() for line in coift.lines]
    assert labels[:4] == ["SAM (ours)", "SAM + 5 neg. (ours)", "HQ-SAM (ours)", "HQ-SAM + 5 neg. (ours)"]
    np.testing.assert_allclose(coift.lines[0].get_xdata(), [1, 3, 5, 10])
    np.testing.assert_allclose(coift.lines[0].get_ydata(), [51, 53, 55, 60])
    np.testing.assert_allclose(coift.lines[3].get_xdata(), [5, 10])
    np.testing.assert_allclose(coift.lines[3].get_ydata(), [58 + 5.5, 58 + 10.5])
    assert coift.lines[0].get_linestyle() != coift.lines[1].get_linestyle()
    assert coift.lines[0].get_marker() != coift.lines[1].get_marker()
    paper_lines = [line for line in coift.lines if line.get_label().endswith("(paper)")]
    assert len(paper_lines) == 4 and all(line.get_linestyle() == "--" for line in paper_lines)
    np.testing.assert_allclose(paper_lines[0].get_ydata(), [10 + 3, 30 + 3])  # SAM, positives only
    assert all(line.get_label().endswith("(paper)") for line in fig.axes[1].lines)

    assert len(points_curve(summary).axes) == 1
    with pytest.raises(ValueError, match="no data for datasets"):
        points_curve(summary, datasets=["HRSOD"])


def test_points_curve_puts_the_paper_beside_our_toy_counterparts():
    summary = _points_summary().rename(columns={"COIFT mBIoU": "Toy-COIFT mBIoU", "COIFT mIoU": "Toy-COIFT mIoU"})
    summary = summary.assign(**{"Toy-DIS mBIoU": summary["Toy-COIFT mBIoU"] - 20})
    fig = points_curve(summary, _paper_fig5())
    assert [ax.get_title() for ax in fig.axes] == ["Toy-COIFT (paper: COIFT)", "Toy-DIS (paper: DIS-VD)"]
    for ax, paper_name in zip(fig.axes, ["COIFT", "DIS-VD"]):
        sources = {line.get_label().rsplit(" ", 1)[1] for line in ax.lines}
        assert sources == {"(ours)", "(paper)"}
        paper_sam = [line for line in ax.lines if line.get_label() == "SAM (paper)"][0]
        expected = _paper_fig5().query("dataset == @paper_name and model == 'SAM' and neg_points == 0")["mbiou"]
        np.testing.assert_allclose(paper_sam.get_ydata(), expected.to_numpy())
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [31, 33, 35, 40])


def test_training_curves_smooths_losses_and_marks_the_lr_drop(tmp_path):
    steps, epochs = _logs()
    steps.to_csv(tmp_path / "steps.csv", index=False)
    epochs.to_csv(tmp_path / "epochs.csv", index=False)
    fig = training_curves(tmp_path / "steps.csv", tmp_path / "epochs.csv", smooth=4)
    assert len(fig.axes) == 3
    _assert_labelled(fig)
    loss_ax, iou_ax, biou_ax = fig.axes
    assert all(ax.get_legend() is not None for ax in fig.axes)
    # Trailing mean of up to 4 steps, computed by convolution.
    for line, column in zip(loss_ax.lines, ("bce", "dice", "loss")):
        values = steps[column].to_numpy()
        sums = np.convolve(values, np.ones(4))[: len(values)]
        np.testing.assert_allclose(line.get_ydata(), sums / np.minimum(np.arange(1, len(values) + 1), 4))
    drop = [line for line in loss_ax.lines if line.get_label() == "learning-rate drop"]
    assert len(drop) == 1 and drop[0].get_xdata()[0] == 31
    # Validation: NaN epochs skipped; SAM flat; the drop sits after epoch 3, where epoch 4 starts.
    hq, sam, epoch_drop = biou_ax.lines
    np.testing.assert_allclose(hq.get_xdata(), [1, 3, 4])
    np.testing.assert_allclose(hq.get_ydata(), [50, 55, 58])
    np.testing.assert_allclose(sam.get_ydata(), [52, 52, 52])
    np.testing.assert_allclose(iou_ax.lines[0].get_ydata(), [60, 70, 75])
    assert epoch_drop.get_xdata()[0] == 3

    assert len(training_curves(steps).axes) == 1
    with pytest.raises(ValueError, match="no validation columns"):
        training_curves(steps, epochs[["epoch", "train_loss"]])
    with pytest.raises(ValueError, match="lacks the columns"):
        training_curves(steps.drop(columns="lr"))


def test_save_figure_writes_png_and_pdf_atomically(tmp_path):
    fig = box_noise_curve(_box_noise_summary())
    png, pdf = save_figure(fig, tmp_path / "figures", "box_noise")
    assert (png.name, pdf.name) == ("box_noise.png", "box_noise.pdf")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and pdf.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["box_noise.pdf", "box_noise.png"]
    with pytest.raises(ValueError, match="plain file name"):
        save_figure(fig, tmp_path, "sub/name")
