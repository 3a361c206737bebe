"""How sure the HQ-SAM vs SAM comparisons are: paired bootstrap intervals over images, and win counts.

An image is the unit: with several trials per setting (point prompts), its value is the mean over its trials. A
bootstrap replicate resamples each dataset's images with replacement, independently per dataset, and takes the
same images for both models, so the gain's interval is paired. Replicate r of dataset d draws its images from
`keyed_rng(seed, "bootstrap", d)` (every setting of a study the same draws): the same rows give the same intervals.
"""

from typing import Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..eval.hq_benchmark import METRIC_LABELS
from ..seeding import keyed_rng


def paired_bootstrap(
    rows: pd.DataFrame,
    by: Union[str, Sequence[str]] = (),
    datasets: Optional[Iterable[str]] = None,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    baseline: str = "SAM",
    model: str = "HQ-SAM",
) -> pd.DataFrame:
    """Per setting and dataset, and for the mean of the dataset means ("average"), both models' mIoU and mBIoU
    (x100) and the gain (model - baseline), each with its bootstrap percentile interval, and the images won.

    Arguments:
      rows (pd.DataFrame): per-image rows (dataset, image, model, iou, biou, the `by` columns, any trial column)
        of `evaluate_hq_datasets`, `evaluate_box_noise` or `evaluate_points`; rows of other models are left out.
      by (str or list): the setting's columns, e.g. "noise_scale" or ["pos_points", "neg_points"].
      datasets (iterable or None): the datasets and their order; None: all, in order of appearance.
      resamples (int): bootstrap replicates.
      level (float): the intervals' coverage, e.g. 0.95 for the 2.5th to 97.5th percentiles.

    Returns:
      pd.DataFrame indexed by (*by, dataset, metric), dataset in `datasets` then "average", metric "mIoU" or
        "mBIoU"; columns "<baseline>", "<model>", "gain" (the estimates, as `hq_benchmark.summarize`), each
        followed by "... low" and "... high" (its interval); "wins", "ties", "losses" (images where the model
        scores above, the same as, below the baseline; summed for "average") and "images". `attrs` holds the
        rows' (their provenance) and "level", "resamples", "seed" and "models" (baseline, model).
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [column for column in ["dataset", "image", "model", "iou", "biou", *by] if column not in rows.columns]
    if missing:
        raise ValueError(f"rows lack the columns {missing}; they have {list(rows.columns)}")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1, got resamples={resamples}, level={level}")
    names = list(datasets) if datasets is not None else list(dict.fromkeys(rows["dataset"]))
    models = [baseline, model]
    metrics = [metric for metric, _ in METRIC_LABELS]
    images = paired_images(rows[rows["dataset"].isin(names)], [*by, "dataset", "image"], models)
    quantiles = [(1 - level) / 2, (1 + level) / 2]
    records = []
    for setting, frame in images.groupby(level=by) if by else [((), images)]:
        setting = setting if isinstance(setting, tuple) else (setting,)
        present = set(frame.index.get_level_values("dataset"))
        absent = [name for name in names if name not in present]
        if absent:
            raise ValueError(f"setting {dict(zip(by, setting))} has no rows for the datasets {absent}")
        estimates, replicates, counts = [], [], []
        for name in names:
            values = frame.xs(name, level="dataset").to_numpy().reshape(-1, 2, len(metrics))  # images x model x metric
            drawn = keyed_rng(seed, "bootstrap", name).integers(0, len(values), size=(resamples, len(values)))
            estimates.append(values.mean(axis=0))
            replicates.append(values[drawn].mean(axis=1))  # resamples x model x metric
            gain = values[:, 1] - values[:, 0]
            counts.append(np.stack([(gain > 0).sum(0), (gain == 0).sum(0), (gain < 0).sum(0), [len(values)] * 2]))
        estimates.append(np.mean(estimates, axis=0))
        replicates.append(np.mean(replicates, axis=0))
        counts.append(np.sum(counts, axis=0))
        for name, estimate, replicate, count in zip([*names, "average"], estimates, replicates, counts):
            estimate = np.concatenate([estimate, estimate[1:] - estimate[:1]])  # baseline, model, gain x metric
            low, high = np.quantile(np.concatenate([replicate, replicate[:, 1:] - replicate[:, :1]], axis=1),
                                    quantiles, axis=0)
            for m, (_, label) in enumerate(METRIC_LABELS):
                record = {"key": (*setting, name, label)}
                for q, quantity in enumerate([*models, "gain"]):
                    record.update({quantity: estimate[q, m], f"{quantity} low": low[q, m],
                                   f"{quantity} high": high[q, m]})
                record.update(zip(["wins", "ties", "losses", "images"], count[:, m].tolist()))
                records.append(record)
    table = pd.DataFrame(records).set_index("key")
    table.index = pd.MultiIndex.from_tuples(table.index, names=[*by, "dataset", "metric"])
    table.attrs = {**rows.attrs, "level": level, "resamples": resamples, "seed": seed, "models": (baseline, model)}
    return table


def paired_images(rows: pd.DataFrame, keys: Sequence[str], models: Sequence[str]) -> pd.DataFrame:
    """Per-image rows paired by image: one row per value of the `keys` columns (e.g. dataset, image), columns
    (model, metric) for each of `models` and metric "iou" and "biou", each the mean of its rows (its trials), x100.
    Rows of other models are left out; the rows must have the `keys`, "model", "iou" and "biou" columns.

    ValueError, naming the first 5 and counting the rest, if an image lacks rows of one of `models`, or if there are
    no rows of them at all.
    """
    metrics = [metric for metric, _ in METRIC_LABELS]
    paired = rows[rows["model"].isin(models)]
    images = paired.groupby([*keys, "model"])[metrics].mean().mul(100).unstack("model").swaplevel(axis=1)
    images = images.reindex(columns=pd.MultiIndex.from_product([list(models), metrics]))
    lacking = [f"{key} has no {name} rows" for name in models for key in images.index[images[name].isna().all(axis=1)]]
    if lacking or images.empty:
        shown = "; ".join(lacking[:5]) + (f"; and {len(lacking) - 5} more" if len(lacking) > 5 else "")
        raise ValueError(f"every image needs rows of {' and '.join(models)}: {shown or 'there are no rows'}")
    return images


def gain_columns(intervals: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """The gain of a `paired_bootstrap` table as a table shows it: columns "gain" (float), "gain 95% CI"
    ("[low, high]" with `digits` decimals; the label follows the table's level) and "wins" ("wins/images"),
    indexed as `intervals`."""
    label = f"gain {interval_level(intervals)} CI"
    cells = pd.DataFrame(index=intervals.index)
    cells["gain"] = intervals["gain"]
    cells[label] = [f"[{low:.{digits}f}, {high:.{digits}f}]"
                    for low, high in zip(intervals["gain low"], intervals["gain high"])]
    cells["wins"] = [f"{wins}/{images}" for wins, images in zip(intervals["wins"], intervals["images"])]
    return cells


def interval_level(intervals: pd.DataFrame) -> str:
    """The coverage of a `paired_bootstrap` table as a percentage, e.g. "95%"."""
    return f"{100 * intervals.attrs['level']:g}%"


def interval_note(intervals: pd.DataFrame) -> str:
    """A caption sentence saying how a `paired_bootstrap` table's intervals and wins were made."""
    baseline, model = intervals.attrs["models"]
    return (
        f"Gain intervals: {interval_level(intervals)} paired bootstrap over images "
        f"({intervals.attrs['resamples']} resamples, seed {intervals.attrs['seed']}); "
        f"wins: images where {model} scores above {baseline}, of all."
    )
