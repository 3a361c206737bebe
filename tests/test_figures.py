import json
import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from hqsam import HQSam, build_hqsam
from hqsam.data.sources import Sample
from hqsam.decoding import predict_box_masks
from hqsam.figures import (
    BOX_COLOUR,
    GRID_MODEL_COLOURS,
    GT_COLOUR,
    MODEL_COLOURS,
    OUTLINE,
    OUTLINE_COLOUR,
    ZOOM_COLOUR,
    box_noise_curve,
    describe_picks,
    overlay,
    pick_by_gain,
    points_curve,
    qualitative_grid,
    save_figure,
    training_curves,
    zoom_window,
)
from hqsam.eval import summarize
from hqsam.metrics import boundary_iou, mask_iou
from hqsam.notebook import grid_samples
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
        np.testing.assert_array_equal(ax.images[0].get_array(), overlay(sample.image, mask, GRID_MODEL_COLOURS[name]))
    with pytest.raises(ValueError, match="one mapping and one box per sample"):
        qualitative_grid([sample, sample], [{"SAM": exact, "HQ-SAM": exact}] * 2, [np.array([0, 0, 5, 5])])
    with pytest.raises(ValueError, match=r"no mask for \['HQ-SAM'\]"):
        qualitative_grid([sample], [{"SAM": exact}], [np.array([0, 0, 5, 5])])
    with pytest.raises(ValueError, match="must be H x W as its GT"):
        qualitative_grid([sample], [{"SAM": exact, "HQ-SAM": exact[:-1]}], [np.array([0, 0, 5, 5])])


def _hq_rows(scores) -> pd.DataFrame:
    # HQ benchmark rows from {image: (SAM biou, HQ-SAM biou)}, the dataset the image name's prefix.
    return pd.DataFrame([{"dataset": image.split("/")[0], "image": image, "model": model, "iou": 0.9, "biou": biou}
                         for image, pair in scores.items() for model, biou in zip(("SAM", "HQ-SAM"), pair)])


def test_pick_by_gain_takes_the_nearest_rank_percentiles_of_the_gain():
    rng = np.random.default_rng(3)
    sizes = {"COIFT": 7, "DIS5K-VD": 10, "HRSOD": 4}
    rows = _hq_rows({f"{name}/{i:02d}": tuple(rng.random(2)) for name, size in sizes.items() for i in range(size)})
    rows = pd.concat([rows, rows.assign(model="other", biou=0.0)]).sample(frac=1, random_state=0)  # others left out
    picks = pick_by_gain(rows, datasets=["DIS5K-VD", "COIFT"])
    assert list(picks.columns) == ["dataset", "image", "percentile", "rank", "images", "SAM BIoU", "HQ-SAM BIoU", "gain"]
    assert picks.attrs["rule"] == describe_picks()
    assert list(picks["dataset"]) == ["DIS5K-VD"] * 3 + ["COIFT"] * 3 and list(picks["percentile"]) == [25, 50, 75] * 2
    for name in ("DIS5K-VD", "COIFT"):
        mine = rows[(rows["dataset"] == name) & (rows["model"] != "other")].pivot(index="image", columns="model",
                                                                                   values="biou")
        gains = 100 * mine["HQ-SAM"] - 100 * mine["SAM"]
        for _, pick in picks[picks["dataset"] == name].iterrows():
            expected = np.percentile(gains.to_numpy(), pick["percentile"], method="inverted_cdf")  # nearest rank
            assert pick["image"] == gains.index[gains.to_numpy() == expected].item()
            assert pick["gain"] == pytest.approx(expected) and pick["images"] == sizes[name]
            assert pick["SAM BIoU"] == pytest.approx(100 * mine.loc[pick["image"], "SAM"])
    assert list(pick_by_gain(rows)["dataset"].unique()) == list(dict.fromkeys(rows["dataset"]))


def test_pick_by_gain_breaks_ties_by_image_name_and_shows_an_image_once():
    # Gains (in points): b, d and a tie at 0, c gains 50; in rank order a, b, d, c.
    rows = _hq_rows({"D/d": (0.5, 0.5), "D/c": (0.25, 0.75), "D/b": (0.75, 0.75), "D/a": (0.25, 0.25),
                     "E/only": (0.5, 0.25), "F/x": (0.5, 1.0), "F/y": (0.25, 0.75)})
    picks = pick_by_gain(rows)
    assert list(picks["image"]) == ["D/a", "D/b", "D/d", "E/only", "F/x", "F/y"]
    assert list(picks["rank"]) == [1, 2, 3, 1, 1, 2]
    # One image: picked once, at the 25th; two (tied at 50, F/x first by name): ranks 1, 1, 2.
    assert list(picks["percentile"]) == [25, 50, 75, 25, 25, 75]
    assert list(picks["gain"]) == [0, 0, 0, -25, 50, 50]
    assert list(pick_by_gain(rows.iloc[::-1], datasets=["D", "E", "F"])["image"]) == list(picks["image"])
    assert list(pick_by_gain(rows, percentiles=[100, 0], datasets=["D"])["image"]) == ["D/a", "D/c"]


def test_pick_by_gain_pairs_every_image_or_names_the_unpaired():
    rows = _hq_rows({f"D/{i}": (0.5, 0.6) for i in range(4)})
    alone = rows.drop(rows.index[(rows["image"] == "D/2") & (rows["model"] == "HQ-SAM")])
    with pytest.raises(ValueError, match=r"D/2.*has no HQ-SAM rows"):
        pick_by_gain(alone)
    with pytest.raises(ValueError, match=r"no rows for the datasets \['E'\]"):
        pick_by_gain(rows, datasets=["E"])
    with pytest.raises(ValueError, match="lacks the columns"):
        pick_by_gain(rows.drop(columns="biou"))
    for bad in ([], [101], [25.5]):
        with pytest.raises(ValueError, match="percentiles must be integers"):
            pick_by_gain(rows, percentiles=bad)


def test_the_rule_is_stated_in_the_caption_and_the_notebook():
    rule = describe_picks()
    assert "25th, 50th and 75th percentiles of HQ-SAM's boundary-IoU gain over SAM" in rule
    assert "equal gains by image name" in rule and "ceil(p n / 100)" in rule
    assert describe_picks([50]).startswith("Examples picked per dataset: the images at the 50th percentile of")
    samples = [_sample(0), _sample(3)]
    rows = _hq_rows({"toy/0": (0.5, 0.7), "toy/3": (0.5, 0.6)})
    picks = pick_by_gain(rows)  # toy/3 (gain 10) at the 25th, toy/0 (20) at the 75th
    box = np.array([2, 2, 30, 38])
    fig = qualitative_grid([samples[1], samples[0]], [{"SAM": s.mask, "HQ-SAM": s.mask} for s in samples], [box] * 2,
                           picks=picks)
    assert fig.get_suptitle().replace("\n", " ") == rule
    assert fig.axes[0].get_ylabel() == "toy/3\n25th percentile, BIoU gain +10.0"
    assert fig.axes[5].get_ylabel() == "toy/0\n75th percentile, BIoU gain +20.0"
    assert not qualitative_grid(samples, [{"SAM": s.mask, "HQ-SAM": s.mask} for s in samples], [box] * 2).get_suptitle()
    with pytest.raises(ValueError, match="picks must be pick_by_gain's rows of the samples"):
        qualitative_grid(samples, [{"SAM": s.mask, "HQ-SAM": s.mask} for s in samples], [box] * 2, picks=picks)
    notebook = json.loads((Path(__file__).parents[1] / "notebooks/05_tables_and_figures.ipynb").read_text())
    code = "".join(line for cell in notebook["cells"] if cell["cell_type"] == "code" for line in cell["source"])
    assert "qualitative_grid(samples, masks, boxes, picks=picks)" in code
    assert "display(Markdown(f\"**qualitative_grid**: {picks.attrs['rule']}\"))" in code


def test_grid_samples_reads_the_picked_images(tmp_path):
    # The toy layout's four validation folders, three 8 x 8 pairs each.
    rng = np.random.default_rng(0)
    for folder in ("dis", "coift", "hrsod", "thin"):
        for kind in ("im", "gt"):
            (tmp_path / "toy" / folder / kind).mkdir(parents=True)
        for stem in ("a", "b", "c"):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"toy/{folder}/im/{stem}.jpg")
            Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(tmp_path / f"toy/{folder}/gt/{stem}.png")
    rows = _hq_rows({f"{name}/{stem}": (0.5, gain) for name in ("Toy-COIFT", "Toy-Thin", "Toy-DIS")
                     for stem, gain in zip("cab", (0.9, 0.6, 0.7))})
    paths = SimpleNamespace(data_root=tmp_path, layout="toy")
    samples, picks = grid_samples(paths, rows, count=2)
    assert [sample.name for sample in samples] == list(picks["image"]) == [
        f"{name}/{stem}" for name in ("Toy-COIFT", "Toy-Thin") for stem in "abc"]
    assert [sample.name for sample in grid_samples(paths, rows, quick=True)[0]] == [s.name for s in samples]
    with pytest.raises(ValueError, match=r"lack: \['Toy-DIS/z'\]; rerun notebook 04"):
        grid_samples(paths, rows.replace("Toy-DIS/b", "Toy-DIS/z"), count=3)


def _luminance(colour) -> float:
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_contours_are_outlined_and_show_on_any_background():
    # Against every background luminance, the line or its outline keeps WCAG's 3:1 contrast for graphics.
    for colour in (*GRID_MODEL_COLOURS.values(), GT_COLOUR, BOX_COLOUR, ZOOM_COLOUR):
        for background in np.linspace(0, 1, 101):
            contrast = [(max(lum, background) + 0.05) / (min(lum, background) + 0.05)
                        for lum in (_luminance(colour), _luminance(OUTLINE_COLOUR))]
            assert max(contrast) >= 3, (colour, background)
    sample = _sample(0)
    masks = {"SAM": np.roll(sample.mask, 3, axis=1), "HQ-SAM": np.roll(sample.mask, -2, axis=0)}
    for background, shown in ((GRID_MODEL_COLOURS["SAM"], [OUTLINE_COLOUR]),
                              ("#000000", [*GRID_MODEL_COLOURS.values(), GT_COLOUR])):
        image = np.broadcast_to(np.array([int(background[i:i + 2], 16) for i in (1, 3, 5)], np.uint8), (40, 40, 3))
        fig = qualitative_grid([Sample(image.copy(), sample.mask, "plain")], [masks], [np.array([2, 2, 30, 38])],
                               zoom_fraction=1.0)
        zoomed = fig.axes[4]
        assert len(zoomed.collections) == 3 and all(c.get_path_effects() == OUTLINE for c in zoomed.collections)
        assert all(patch.get_path_effects() == OUTLINE for ax in fig.axes for patch in ax.patches)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
        x0, y0, x1, y1 = zoomed.get_window_extent().extents
        height = pixels.shape[0]  # the zoom panel's pixels, 3 in from its magenta frame
        inside = pixels[math.ceil(height - y1) + 3: int(height - y0) - 3, math.ceil(x0) + 3: int(x1) - 3]
        for colour in shown:  # drawn where the background would hide it: the outline on red, the lines on black
            target = np.array([round(255 * c) for c in to_rgb(colour)])
            assert (np.abs(inside - target).max(axis=-1) < 40).any(), (background, colour)
    legend = fig.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == [
        "box prompt: gold", "GT: green", "SAM: red, dashed", "HQ-SAM: blue", "zoom window: magenta, dotted"]
    assert [handle.get_color() for handle in legend.legend_handles] == [
        BOX_COLOUR, GT_COLOUR, GRID_MODEL_COLOURS["SAM"], GRID_MODEL_COLOURS["HQ-SAM"], ZOOM_COLOUR]


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
