"""The paper's figures from our results: qualitative SAM / HQ-SAM comparisons (of images picked by a stated rule,
`pick_by_gain`), box-noise and point-prompt robustness curves (Table 13, Figure 5), and training curves; saved as
PNG and PDF.

Every function returns a `matplotlib.figure.Figure` built without pyplot's global state, so scripts, tests and
notebooks (which display a returned Figure) can all use them; `save_figure` writes one to disk.
Scores are percentages (x100), as `hqsam.eval.summarize` reports them.
"""

import math
import textwrap
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
from matplotlib import colormaps, patheffects
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .eval.hq_benchmark import COLUMNS as HQ_ROW_COLUMNS
from .io import atomic_write
from .metrics import boundary_band, boundary_dilation, boundary_iou, mask_iou
from .provenance import write_provenance
from .report import DATASET_ALIASES, paired_images

PathLike = Union[str, Path]
Box = Tuple[int, int, int, int]

MODEL_COLOURS = {"SAM": "#d62728", "HQ-SAM": "#1f77b4"}  # red, blue: the curves', on white
# The qualitative grid draws every line over a black outline (OUTLINE) in colours of relative luminance >= 0.4, so
# that against any background the line or its outline keeps a 3:1 contrast (WCAG's for graphics): the same
# meaning as MODEL_COLOURS, lighter.
GRID_MODEL_COLOURS = {"SAM": "#ff8c8c", "HQ-SAM": "#4db8ff"}  # light red, light blue
GT_COLOUR = "#40e040"  # green
BOX_COLOUR = "#ffd700"  # gold
ZOOM_COLOUR = "#ff80ff"  # magenta
COLOUR_NAMES = {GRID_MODEL_COLOURS["SAM"]: "red", GRID_MODEL_COLOURS["HQ-SAM"]: "blue", GT_COLOUR: "green",
                BOX_COLOUR: "gold", ZOOM_COLOUR: "magenta"}  # as the grid's legend names them
OTHER_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MASK_COLOURS = tuple(to_hex(colour) for colour in colormaps["tab20"].colors)  # masks_figure's, cycled
OUTLINE_COLOUR = "black"
OUTLINE = [patheffects.Stroke(linewidth=3.6, foreground=OUTLINE_COLOUR), patheffects.Normal()]
GAIN_PERCENTILES = (25, 50, 75)  # the qualitative grid's picks per dataset (`pick_by_gain`)
PNG_DPI = 150
FONT_SIZE = 10
BIOU_LABEL = "boundary mIoU (%)"
IOU_LABEL = "mask mIoU (%)"


def save_figure(fig: Figure, directory: PathLike, stem: str, made: Optional[dict] = None) -> Tuple[Path, Path]:
    """Write `fig` as `directory/stem.png` (150 dpi) and `directory/stem.pdf`, each atomically, each with the
    provenance `made` beside it when given (`hqsam.provenance`).

    Returns:
      (Path, Path): the PNG and PDF paths.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"save_figure needs a matplotlib Figure, got {type(fig).__name__}")
    if not stem or Path(stem).name != stem:
        raise ValueError(f"stem must be a plain file name without folders or extension, got {stem!r}")
    paths = Path(directory) / f"{stem}.png", Path(directory) / f"{stem}.pdf"
    for path in paths:
        with atomic_write(path, "wb") as file:
            fig.savefig(file, format=path.suffix[1:], dpi=PNG_DPI, bbox_inches="tight")
        if made is not None:
            write_provenance(path, made)
    return paths


def zoom_window(errors: np.ndarray, size: int) -> Box:
    """The size x size window (clipped to the image) holding the most error pixels: (x0, y0, x1, y1), x1 and y1
    exclusive. `errors` is an H x W bool or count map; ties go to the first window in row-major order; with no
    errors at all the window is centred on the image."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim != 2 or errors.size == 0:
        raise ValueError(f"errors must be a non-empty H x W map, got shape {errors.shape}")
    if size < 1:
        raise ValueError(f"the zoom window size must be at least 1 pixel, got {size}")
    height, width = errors.shape
    size_y, size_x = min(size, height), min(size, width)
    if not errors.any():
        y0, x0 = (height - size_y) // 2, (width - size_x) // 2
        return x0, y0, x0 + size_x, y0 + size_y
    integral = np.pad(errors.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (
        integral[size_y:, size_x:] - integral[:-size_y, size_x:] - integral[size_y:, :-size_x] + integral[:-size_y, :-size_x]
    )
    y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(x0), int(y0), int(x0) + size_x, int(y0) + size_y


def describe_picks(percentiles: Sequence[int] = GAIN_PERCENTILES, baseline: str = "SAM",
                   model: str = "HQ-SAM") -> str:
    """The rule `pick_by_gain` picks images by, as the caption sentence the qualitative grid and notebook show."""
    ordered = [_ordinal(p) for p in sorted(set(percentiles))]
    named = ", ".join(ordered[:-1]) + " and " * (len(ordered) > 1) + ordered[-1]
    return (
        f"Examples picked per dataset: the images at the {named} percentile{'s' * (len(ordered) > 1)} of {model}'s "
        f"boundary-IoU gain over {baseline} ({model}'s boundary IoU minus {baseline}'s on the same image, from the HQ "
        "benchmark's per-image rows), by nearest rank: of the n images ordered by gain, equal gains by image name, "
        "the p-th percentile is the image at rank ceil(p n / 100), at least 1; an image picked at two percentiles is "
        "shown once, at the lower."
    )


def pick_by_gain(
    rows: pd.DataFrame, percentiles: Sequence[int] = GAIN_PERCENTILES, datasets: Optional[Sequence[str]] = None,
    baseline: str = "SAM", model: str = "HQ-SAM",
) -> pd.DataFrame:
    """Per dataset, the images at `percentiles` of `model`'s boundary-IoU gain over `baseline`, paired by image, by
    the rule `describe_picks` states: the qualitative grid's rows (`qualitative_grid`'s `picks`).

    Arguments:
      rows (pd.DataFrame): the HQ benchmark's per-image rows (dataset, image, model, iou, biou; hq_rows.csv of
        `hqsam.eval.evaluate_hq_datasets`); rows of other models are left out.
      percentiles (sequence of int): each in [0, 100]; shown ascending.
      datasets (sequence or None): the datasets and their order; None: all, in order of appearance.

    Returns:
      pd.DataFrame, one row per picked image, by dataset then percentile: columns dataset, image (the sample's
        name), percentile, rank (1-based, by gain), images (the dataset's count), "<baseline> BIoU", "<model> BIoU"
        and "gain" (%). `attrs["rule"]` is `describe_picks`'s sentence.

    Raises ValueError naming the images without a row of both models (`hqsam.report.paired_images`: none is
    paired silently), a dataset without rows, or a percentile out of range.
    """
    bad = [p for p in percentiles if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p <= 100]
    if bad or not len(percentiles):
        raise ValueError(f"percentiles must be integers in [0, 100], at least one; got {list(percentiles)}")
    _check_columns(rows, HQ_ROW_COLUMNS, "the HQ benchmark's per-image rows")
    names = list(datasets) if datasets is not None else list(dict.fromkeys(rows["dataset"]))
    present = set(rows["dataset"])
    absent = [name for name in names if name not in present]
    if absent or not names:
        raise ValueError(f"no rows for the datasets {absent or names}; the rows have "
                         f"{list(dict.fromkeys(rows['dataset']))}")
    images = paired_images(rows[rows["dataset"].isin(names)], ["dataset", "image"], [baseline, model])
    scores = pd.DataFrame({f"{baseline} BIoU": images[(baseline, "biou")], f"{model} BIoU": images[(model, "biou")]})
    scores = scores.reset_index().assign(gain=lambda frame: frame[f"{model} BIoU"] - frame[f"{baseline} BIoU"])
    picked = []
    for name in names:
        ordered = scores[scores["dataset"] == name].sort_values(["gain", "image"], ignore_index=True)
        ranks: Dict[int, int] = {}  # rank: the lowest percentile there
        for p in sorted(set(percentiles)):
            ranks.setdefault(max(1, math.ceil(p * len(ordered) / 100)), int(p))
        picked.append(ordered.iloc[[rank - 1 for rank in ranks]].assign(
            percentile=list(ranks.values()), rank=list(ranks), images=len(ordered)))
    table = pd.concat(picked, ignore_index=True)[["dataset", "image", "percentile", "rank", "images",
                                                  f"{baseline} BIoU", f"{model} BIoU", "gain"]]
    table.attrs["rule"] = describe_picks(percentiles, baseline, model)
    return table


def qualitative_grid(
    samples: Sequence,
    masks: Sequence[Mapping[str, np.ndarray]],
    boxes: Sequence[np.ndarray],
    zoom: bool = True,
    zoom_fraction: float = 0.35,
    picks: Optional[pd.DataFrame] = None,
) -> Figure:
    """One row per sample: the image with its box prompt, the GT, SAM's mask, HQ-SAM's mask and, with `zoom`,
    a crop around where SAM and HQ-SAM differ most from the GT near its boundary (`zoom_window` over the error
    pixels within the boundary metric's band width of it; all error pixels if none lies there), with the GT,
    SAM and HQ-SAM contours; its window is drawn on the full views. Masks are tinted and contours, box and window
    drawn in GRID_MODEL_COLOURS, GT_COLOUR, BOX_COLOUR and ZOOM_COLOUR, lines over a black outline (OUTLINE) so
    they show on any background; the legend names each colour.

    Arguments:
      samples (sequence of Sample): H x W x 3 uint8 images with H x W bool GT masks.
      masks (sequence of mappings): per sample {"SAM": H x W bool, "HQ-SAM": H x W bool}, the masks drawn, e.g.
        from `hqsam.decoding.predict_box_masks` for `boxes`.
      boxes (sequence): per sample the x0, y0, x1, y1 box prompt (pixels) the masks came from.
      zoom_fraction (float): the zoom window's side as a fraction of the image's shorter side.
      picks (pd.DataFrame or None): `pick_by_gain`'s rows of the samples, in their order: each row is labelled with
        its percentile and benchmark gain, and the figure is titled with the rule (`attrs["rule"]`).

    Returns:
      Figure with len(samples) x (5 if zoom else 4) axes, titled with each mask's IoU and boundary IoU (%).
    """
    if len(samples) == 0:
        raise ValueError("qualitative_grid needs at least one sample")
    if not len(samples) == len(masks) == len(boxes):
        raise ValueError(f"{len(samples)} samples, {len(masks)} mask mappings and {len(boxes)} boxes: give one "
                         "mapping and one box per sample")
    if not 0 < zoom_fraction <= 1:
        raise ValueError(f"zoom_fraction must be in (0, 1], got {zoom_fraction}")
    names = [sample.name for sample in samples]
    if picks is not None and ("rule" not in picks.attrs or list(picks["image"]) != names):
        raise ValueError(f"picks must be pick_by_gain's rows of the samples, in their order: they name "
                         f"{list(picks['image'])}, the samples are {names}")
    columns = 5 if zoom else 4
    fig = Figure(figsize=(2.6 * columns, 2.8 * len(samples)), layout="constrained")
    if picks is not None:
        fig.suptitle(textwrap.fill(picks.attrs["rule"], width=round(11 * 2.6 * columns)), fontsize=FONT_SIZE)
    grid = fig.subplots(len(samples), columns, squeeze=False)
    for row, (sample, given, box) in enumerate(zip(samples, masks, boxes)):
        image, gt = np.asarray(sample.image), np.asarray(sample.mask, dtype=bool)
        if image.ndim != 3 or image.shape[:2] != gt.shape:
            raise ValueError(f"sample {sample.name!r}: image {image.shape} and mask {gt.shape} must be H x W x 3 and H x W")
        missing = [name for name in GRID_MODEL_COLOURS if name not in given]
        if missing:
            raise ValueError(f"sample {sample.name!r}: no mask for {missing}; give {list(GRID_MODEL_COLOURS)}")
        shown = {name: np.asarray(given[name], dtype=bool) for name in GRID_MODEL_COLOURS}
        wrong = {name: mask.shape for name, mask in shown.items() if mask.shape != gt.shape}
        if wrong:
            raise ValueError(f"sample {sample.name!r}: masks {wrong} must be H x W as its GT {gt.shape}")
        box = np.asarray(box, dtype=np.float64).reshape(4)
        axes = grid[row]
        show_image(axes[0], image, "image + box prompt")
        axes[0].add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                    edgecolor=BOX_COLOUR, linewidth=2, path_effects=OUTLINE))
        label = sample.name
        if picks is not None:
            pick = picks.iloc[row]
            label += f"\n{_ordinal(pick['percentile'])} percentile, BIoU gain {pick['gain']:+.1f}"
        axes[0].set_ylabel(label, fontsize=FONT_SIZE)
        show_image(axes[1], overlay(image, gt, GT_COLOUR), "ground truth")
        for column, (name, mask) in enumerate(shown.items(), start=2):
            title = f"{name}\nIoU {100 * mask_iou(gt, mask):.1f}, BIoU {100 * boundary_iou(gt, mask):.1f}"
            show_image(axes[column], overlay(image, mask, GRID_MODEL_COLOURS[name]), title)
        if zoom:
            errors = _boundary_errors(gt, shown.values())
            x0, y0, x1, y1 = zoom_window(errors, max(1, round(zoom_fraction * min(gt.shape))))
            crop = (slice(y0, y1), slice(x0, x1))
            show_image(axes[4], image[crop], "zoom: GT / SAM / HQ-SAM", extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
            for name, mask, style in (("GT", gt, "-"), ("SAM", shown["SAM"], "--"), ("HQ-SAM", shown["HQ-SAM"], "-")):
                _contour(axes[4], mask[crop], (x0, y0), GRID_MODEL_COLOURS.get(name, GT_COLOUR), style)
            for ax in (axes[0], axes[2], axes[3]):
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=ZOOM_COLOUR,
                                       linewidth=1.5, linestyle=":", path_effects=OUTLINE))
            for spine in axes[4].spines.values():
                spine.set(visible=True, edgecolor=ZOOM_COLOUR, linewidth=2)
    key = [("box prompt", BOX_COLOUR, "-"), ("GT", GT_COLOUR, "-"), ("SAM", GRID_MODEL_COLOURS["SAM"], "--"),
           ("HQ-SAM", GRID_MODEL_COLOURS["HQ-SAM"], "-")] + [("zoom window", ZOOM_COLOUR, ":")] * zoom
    handles = [Line2D([], [], color=colour, linestyle=style, path_effects=OUTLINE,
                      label=f"{name}: {COLOUR_NAMES[colour]}" + {"-": "", "--": ", dashed", ":": ", dotted"}[style])
               for name, colour, style in key]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=FONT_SIZE)
    return fig


def _boundary_errors(gt: np.ndarray, masks) -> np.ndarray:
    # Per pixel, how many masks differ from the GT, counting only pixels within the boundary metric's band
    # width of the GT boundary (inside or outside it) when any error lies there; otherwise all errors.
    errors = sum((mask != gt).astype(np.int64) for mask in masks)
    width = boundary_dilation(*gt.shape)
    near = boundary_band(gt, width) | boundary_band(~gt, width)
    return errors * near if (errors * near).any() else errors


def box_noise_curve(
    summary: pd.DataFrame, paper: Optional[pd.DataFrame] = None, intervals: Optional[pd.DataFrame] = None
) -> Figure:
    """Boundary mIoU (left) and mask mIoU (right) against the box noise scale, one line per model.

    Arguments:
      summary (pd.DataFrame): `summarize(rows, "noise_scale")`: indexed by (model, noise_scale), with
        columns "average mBIoU" and "average mIoU" (%).
      paper (pd.DataFrame or None): the paper's Table 13 (columns model, noise_scale, hq4_miou, hq4_mbiou),
        drawn dashed with hollow markers.
      intervals (pd.DataFrame or None): `hqsam.report.paired_bootstrap(rows, "noise_scale")` of the same rows:
        our line of each model it compares gets a vertical bar per scale, the interval of its "average".

    Returns:
      Figure with 2 axes. Our lines come first on each axis, in the summary's model order, then the paper's;
      with `intervals`, each such model's bars are one LineCollection (`ax.collections`) in its colour.
    """
    _check_index(summary, ["model", "noise_scale"], 'summarize(rows, "noise_scale")')
    _check_columns(summary, ["average mBIoU", "average mIoU"], "summary")
    if paper is not None:
        _check_columns(paper, ["model", "noise_scale", "hq4_miou", "hq4_mbiou"], "the paper's Table 13")
    if intervals is not None:
        _check_index(intervals, ["noise_scale", "dataset", "metric"], 'paired_bootstrap(rows, "noise_scale")')
    fig = Figure(figsize=(10, 4), layout="constrained")
    panels = fig.subplots(1, 2)
    for ax, column, paper_column, label in (
        (panels[0], "average mBIoU", "hq4_mbiou", BIOU_LABEL),
        (panels[1], "average mIoU", "hq4_miou", IOU_LABEL),
    ):
        models = list(dict.fromkeys(summary.index.get_level_values("model")))
        for model in models:
            series = summary.xs(model, level="model")[column].sort_index()
            ax.plot(series.index.to_numpy(float), series.to_numpy(float), marker="o", color=_colour(model, models),
                    label=f"{model} (ours)")
            if intervals is not None and model in intervals.attrs["models"]:
                bounds = intervals.xs(("average", column.split()[-1]), level=["dataset", "metric"]).sort_index()
                ax.vlines(bounds.index.to_numpy(float), bounds[f"{model} low"], bounds[f"{model} high"],
                          colors=_colour(model, models), linewidth=1.5, alpha=0.6)
        if paper is not None:
            paper_models = list(dict.fromkeys(paper["model"]))
            for model in paper_models:
                rows = paper[paper["model"] == model].sort_values("noise_scale")
                ax.plot(rows["noise_scale"].to_numpy(float), rows[paper_column].to_numpy(float), linestyle="--",
                        marker="o", markerfacecolor="none", color=_colour(model, models + paper_models),
                        label=f"{model} (paper)")
        ax.set_xticks(sorted(set(summary.index.get_level_values("noise_scale"))))
        _style(ax, "box noise scale (fraction of box size)", label)
    fig.suptitle("Robustness to noisy box prompts (HQ benchmark average)", fontsize=FONT_SIZE + 2)
    return fig


def points_curve(
    summary: pd.DataFrame, paper: Optional[pd.DataFrame] = None, datasets: Optional[Sequence[str]] = None,
    intervals: Optional[pd.DataFrame] = None,
) -> Figure:
    """Boundary mIoU against the number of positive points, one panel per dataset, per model: positives only
    solid with circles, with negatives dash-dotted with squares; the paper's Figure 5 dashed with hollow markers.

    Arguments:
      summary (pd.DataFrame): `summarize(rows, ["pos_points", "neg_points"])`, indexed by
        (model, pos_points, neg_points), with a "<dataset> mBIoU" column (%) per dataset.
      paper (pd.DataFrame or None): the paper's Figure 5 (columns dataset, model, pos_points, neg_points, mbiou).
      datasets (sequence or None): the panels; None gives every dataset of the summary (then any of the paper's
        without a counterpart in it). A named dataset must be in the summary or the paper. The paper's lines go
        on the panel of our dataset with the same counterpart (`hqsam.report.DATASET_ALIASES`: Toy-COIFT with
        COIFT, Toy-DIS or DIS5K-VD with DIS-VD).
      intervals (pd.DataFrame or None): `hqsam.report.paired_bootstrap(rows, ["pos_points", "neg_points"])` of the
        same rows: each of our lines of a model it compares gets a vertical bar per point count, its mBIoU interval.

    Returns:
      Figure with one axis per dataset and one legend for all below them. On each axis, per model in order: ours without negatives, ours with
      negatives (if any rows), then the paper's lines in the same order; with `intervals`, the bars of each of our
      lines are one LineCollection (`ax.collections`) in its colour and line style.
    """
    _check_index(summary, ["model", "pos_points", "neg_points"], 'summarize(rows, ["pos_points", "neg_points"])')
    if intervals is not None:
        _check_index(intervals, ["pos_points", "neg_points", "dataset", "metric"],
                     'paired_bootstrap(rows, ["pos_points", "neg_points"])')
    if paper is not None:
        _check_columns(paper, ["dataset", "model", "pos_points", "neg_points", "mbiou"], "the paper's Figure 5")
    ours = [c[: -len(" mBIoU")] for c in summary.columns if c.endswith(" mBIoU") and c != "average mBIoU"]
    theirs = list(dict.fromkeys(paper["dataset"])) if paper is not None else []
    paper_name = {DATASET_ALIASES.get(name, name): name for name in theirs}
    counterpart = {name: paper_name.get(DATASET_ALIASES.get(name, name)) for name in ours + theirs}
    if datasets is None:
        covered = {counterpart[name] for name in ours}
        datasets = ours + [name for name in theirs if name not in covered]
    unknown = [d for d in datasets if d not in ours and counterpart.get(d) is None]
    if unknown or not datasets:
        raise ValueError(f"no data for datasets {unknown or 'at all'}: the summary has {ours}, the paper {theirs}")
    fig = Figure(figsize=(4.2 * len(datasets), 4), layout="constrained")
    panels = fig.subplots(1, len(datasets), squeeze=False)[0]
    models = list(dict.fromkeys(summary.index.get_level_values("model")))
    for ax, dataset in zip(panels, datasets):
        if dataset in ours:
            frame = summary[f"{dataset} mBIoU"].reset_index()
            _plot_points(ax, frame, f"{dataset} mBIoU", models, "ours", {})
        if dataset in ours and intervals is not None:
            bounds = intervals.xs((dataset, "mBIoU"), level=["dataset", "metric"]).reset_index()
            for model in (m for m in models if m in intervals.attrs["models"]):
                for negatives, style in ((False, "-"), (True, "-.")):
                    bars = bounds[(bounds["neg_points"] > 0) == negatives]
                    if not bars.empty:
                        ax.vlines(bars["pos_points"].to_numpy(float), bars[f"{model} low"], bars[f"{model} high"],
                                  colors=_colour(model, models), linestyles=style, linewidth=1.5, alpha=0.6)
        theirs_here = counterpart.get(dataset)
        if theirs_here is not None:
            frame = paper[paper["dataset"] == theirs_here]
            _plot_points(ax, frame, "mbiou", models + list(dict.fromkeys(frame["model"])), "paper",
                         dict(linestyle="--", markerfacecolor="none"))
        title = dataset if theirs_here in (None, dataset) else f"{dataset} (paper: {theirs_here})"
        ax.set_title(title, fontsize=FONT_SIZE + 1)
        ax.set_xticks(sorted({int(x) for line in ax.lines for x in line.get_xdata()}))
        _style(ax, "positive points", BIOU_LABEL, legend=False)
    handles = {label: handle for ax in panels for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(4, len(handles)),
               fontsize=FONT_SIZE - 1)
    fig.suptitle("Robustness to point prompts", fontsize=FONT_SIZE + 2)
    return fig


def training_curves(
    steps_csv: Union[PathLike, pd.DataFrame], epochs_csv: Union[PathLike, pd.DataFrame, None] = None,
    smooth: Optional[int] = None,
) -> Figure:
    """Training loss against step and validation scores against epoch, from `hqsam.train` logs.

    Arguments:
      steps_csv (path or DataFrame): steps.csv (columns step, epoch, loss, bce, dice, lr, ...).
      epochs_csv (path, DataFrame or None): epochs.csv; its "<model> average mIoU" / "<model> average mBIoU"
        columns (epochs without validation are empty and skipped). None draws the loss panel only.
      smooth (int or None): rolling-mean window in steps (trailing, partial at the start); None picks
        max(1, steps // 50).

    Returns:
      Figure with 1 axis (loss: BCE, Dice, total smoothed, in that order) or 3 (plus validation mask mIoU and
      boundary mIoU, one line per model, SAM's flat as it is frozen). Every learning-rate drop is a vertical
      dotted line on each axis.
    """
    steps = steps_csv if isinstance(steps_csv, pd.DataFrame) else pd.read_csv(steps_csv)
    _check_columns(steps, ["step", "epoch", "loss", "bce", "dice", "lr"], "steps.csv")
    if steps.empty:
        raise ValueError("steps.csv has no rows: train for at least one step first")
    window = max(1, len(steps) // 50) if smooth is None else smooth
    if window < 1:
        raise ValueError(f"smooth must be a window of at least 1 step, got {smooth}")
    epochs = None
    if epochs_csv is not None:
        epochs = epochs_csv if isinstance(epochs_csv, pd.DataFrame) else pd.read_csv(epochs_csv)
        _check_columns(epochs, ["epoch"], "epochs.csv")
        if not any(c.endswith(" average mIoU") for c in epochs.columns):
            raise ValueError(
                f"epochs.csv has no validation columns ('<model> average mIoU'); it has {list(epochs.columns)}: "
                "train with validation (val_every > 0) or pass epochs_csv=None"
            )
    fig = Figure(figsize=(5 if epochs is None else 14, 4), layout="constrained")
    panels = fig.subplots(1, 1 if epochs is None else 3, squeeze=False)[0]
    drops = _lr_drops(steps)
    loss_ax = panels[0]
    for column, name, colour in (("bce", "BCE", "#ff7f0e"), ("dice", "Dice", "#9467bd"), ("loss", "total", "black")):
        smoothed = steps[column].rolling(window, min_periods=1).mean()
        loss_ax.plot(steps["step"].to_numpy(), smoothed.to_numpy(), color=colour, label=name)
    loss_ax.set_title(f"training loss (rolling mean of {window} steps)", fontsize=FONT_SIZE + 1)
    for step, _ in drops:
        loss_ax.axvline(step, color="grey", linestyle=":", label="learning-rate drop" if step == drops[0][0] else None)
    _style(loss_ax, "step", "loss")
    if epochs is not None:
        models = [c[: -len(" average mIoU")] for c in epochs.columns if c.endswith(" average mIoU")]
        for ax, metric, label in ((panels[1], "mIoU", IOU_LABEL), (panels[2], "mBIoU", BIOU_LABEL)):
            for model in models:
                rows = epochs[["epoch", f"{model} average {metric}"]].dropna()
                ax.plot(rows["epoch"].to_numpy(), rows.iloc[:, 1].to_numpy(), color=_colour(model, models),
                        marker=None if model == "SAM" else "o", label=model + (" (frozen)" if model == "SAM" else ""))
            for _, epoch in drops:
                ax.axvline(epoch, color="grey", linestyle=":", label="learning-rate drop" if epoch == drops[0][1] else None)
            ax.set_title(f"validation {metric} (average over datasets)", fontsize=FONT_SIZE + 1)
            _style(ax, "epoch", label)
    return fig


def masks_figure(image: np.ndarray, records: Sequence[dict], alpha: float = 0.5) -> Figure:
    """An H x W x 3 uint8 image and, beside it, every mask of a generator's records (`HQSamAutomaticMaskGenerator`
    with output_mode "binary_mask": each "segmentation" H x W bool) overlaid in its own colour, the largest first
    so that smaller masks stay visible on top."""
    fig = Figure(figsize=(8, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    show_image(left, image, "image")
    painted = image
    for i, record in enumerate(sorted(records, key=lambda record: record["area"], reverse=True)):
        painted = overlay(painted, record["segmentation"], MASK_COLOURS[i % len(MASK_COLOURS)], alpha)
    show_image(right, painted, f"{len(records)} masks")
    return fig


def _lr_drops(steps: pd.DataFrame) -> List[Tuple[float, float]]:
    # (step, position in epochs) of every step whose learning rate is below the previous step's; the position
    # counts the epochs finished before it, so a drop at an epoch's first step sits on the previous epoch's tick.
    lr, epoch = steps["lr"].to_numpy(float), steps["epoch"].to_numpy()
    per_epoch = steps.groupby("epoch")["step"].agg(["min", "count"])
    drops = []
    for index in np.flatnonzero(lr[1:] < lr[:-1]) + 1:
        first, count = per_epoch.loc[epoch[index]]
        step = float(steps["step"].iloc[index])
        drops.append((step, float(epoch[index] - 1 + (step - first) / count)))
    return drops


def _plot_points(ax: Axes, frame: pd.DataFrame, column: str, models: List[str], source: str, style: Dict) -> None:
    for model in dict.fromkeys(frame["model"]):
        for negatives, (line, marker) in ((False, ("-", "o")), (True, ("-.", "s"))):
            rows = frame[(frame["model"] == model) & ((frame["neg_points"] > 0) == negatives)]
            if rows.empty:
                continue
            counts = sorted(set(rows["neg_points"]))
            label = f"{model} + {', '.join(map(str, counts))} neg." if negatives else model
            rows = rows.sort_values("pos_points")
            ax.plot(rows["pos_points"].to_numpy(float), rows[column].to_numpy(float), color=_colour(model, models),
                    **{"linestyle": line, "marker": marker, **style}, label=f"{label} ({source})")


def show_image(ax: Axes, image: np.ndarray, title: str, extent=None) -> None:
    ax.imshow(image, interpolation="nearest", extent=extent)
    ax.set_title(title, fontsize=FONT_SIZE)
    ax.set_xticks([])
    ax.set_yticks([])


def overlay(image: np.ndarray, mask: np.ndarray, colour: str, alpha: float = 0.5) -> np.ndarray:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
    out = image.astype(np.float64)
    out[mask] = (1 - alpha) * out[mask] + alpha * rgb
    return out.round().astype(np.uint8)


def _contour(ax: Axes, mask: np.ndarray, origin: Tuple[int, int], colour: str, style: str) -> None:
    if mask.any() and not mask.all():
        ys, xs = np.arange(mask.shape[0]) + origin[1], np.arange(mask.shape[1]) + origin[0]
        contours = ax.contour(xs, ys, mask.astype(float), levels=[0.5], colors=[colour], linestyles=[style],
                              linewidths=1.8)
        contours.set_path_effects(OUTLINE)


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _style(ax: Axes, xlabel: str, ylabel: str, legend: bool = True) -> None:
    ax.set_xlabel(xlabel, fontsize=FONT_SIZE)
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.grid(alpha=0.3)
    if legend and len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(fontsize=FONT_SIZE - 2)


def _colour(model: str, models: Sequence[str]) -> str:
    if model in MODEL_COLOURS:
        return MODEL_COLOURS[model]
    others = [m for m in dict.fromkeys(models) if m not in MODEL_COLOURS]
    return OTHER_COLOURS[others.index(model) % len(OTHER_COLOURS)] if model in others else OTHER_COLOURS[0]


def _check_index(frame: pd.DataFrame, names: List[str], made_by: str) -> None:
    if list(frame.index.names) != names:
        raise ValueError(f"expected a table indexed by {names} (from {made_by}), got index {list(frame.index.names)}")


def _check_columns(frame: pd.DataFrame, columns: List[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing}; it has {list(frame.columns)}")
