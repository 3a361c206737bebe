"""Our results beside the paper's published tables, one builder per table.

Each `compare_*` builder returns a DataFrame indexed by model (and setting) whose columns are a two-level index
(quantity, kind), kind being "ours", "paper" and "diff" (ours - paper); a value missing on either side is NaN.
The builder's caption is in `table.attrs["caption"]`; when our numbers come from the toy profile (the "Toy-*"
datasets or the `toy` backbone) it says so: the paper's column still holds what the paper reports, and toy numbers
compare with it in shape (which model wins, by how much), not in value.

Our dataset names map to the paper's by each layout's `SourceSpec.paper_name` (`paper.DATASET_ALIASES`), e.g.
Toy-COIFT or COIFT -> COIFT.

Given `intervals` (`uncertainty.paired_bootstrap` of the same rows), Table 2's gains, Table 13 and Figure 5 also
show our gain's bootstrap interval and the images won: kinds "gain", "gain 95% CI" ("[low, high]") and "wins"
("won/images"), on the rows of the compared model (HQ-SAM), NaN on the baseline's.
"""

from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .paper import DATASET_ALIASES, FIGURE5_DATASETS, PAPER_DATASETS, paper_table
from .uncertainty import gain_columns, interval_note

TOY_NOTE = (
    "Profile toy: our numbers come from the toy world and the toy model; the paper's are what it reports. "
    "They compare in shape (which model wins, by how much), not in value."
)
METRICS = (("mIoU", "miou"), ("mBIoU", "mbiou"))


def compare_hq_datasets(summary: pd.DataFrame) -> pd.DataFrame:
    """Our HQ benchmark beside the paper's Table 2 (rows SAM and HQ-SAM).

    Arguments:
      summary (pd.DataFrame): `hq_benchmark.summarize` output: indexed by model, columns "<dataset> mIoU",
        "<dataset> mBIoU" for our datasets (the paper's four or their toy stand-ins), "average mIoU",
        "average mBIoU"; values x100.

    Returns:
      pd.DataFrame indexed by model, columns (quantity, kind) for quantities "<paper dataset> mIoU/mBIoU" of the
        four datasets and "average mIoU/mBIoU"; a dataset we did not evaluate has NaN as ours.
    """
    datasets = _paper_datasets(summary.columns, ("mIoU", "mBIoU"))
    ours = pd.DataFrame(index=pd.Index(summary.index, name="model"))
    for ours_name, paper_name in datasets.items():
        for label, _ in METRICS:
            ours[f"{paper_name} {label}"] = summary[f"{ours_name} {label}"].to_numpy()
    paper = paper_table("table2_hq_token_ablation").set_index("model")
    renamed = {f"{prefix}_{key}": f"{name} {label}" for name, prefix in PAPER_DATASETS for label, key in METRICS}
    renamed.update({f"avg_{key}": f"average {label}" for label, key in METRICS})
    paper = paper.rename(columns=renamed)[list(renamed.values())]
    for label, _ in METRICS:
        ours[f"average {label}"] = summary[f"average {label}"].to_numpy()
    notes = ["Our HQ benchmark beside the paper's Table 2 (SAM and HQ-SAM, ViT-L, box prompts)."]
    notes += _coverage_notes(datasets)
    return _compare(ours, paper, list(renamed.values()), notes, toy=_is_toy(datasets))


def compare_box_noise(summary: pd.DataFrame, intervals: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Our noisy-box robustness beside the paper's Table 13.

    Arguments:
      summary (pd.DataFrame): `hq_benchmark.summarize(rows, "noise_scale")` output: indexed by (model, noise_scale),
        with "average mIoU" and "average mBIoU" (the mean over our datasets, the paper's "hq4").
      intervals (pd.DataFrame or None): `paired_bootstrap(rows, "noise_scale")` of the same rows.

    Returns:
      pd.DataFrame indexed by (model, noise_scale), quantities "hq4 mIoU" and "hq4 mBIoU", each with kinds ours,
        paper, diff, and with `intervals` gain, gain 95% CI, wins.
    """
    _check_index(summary, ["model", "noise_scale"])
    datasets = _paper_datasets(summary.columns, ("mIoU", "mBIoU"))
    ours = pd.DataFrame(
        {f"hq4 {label}": summary[f"average {label}"].to_numpy() for label, _ in METRICS},
        index=_rounded_index(summary.index, "noise_scale"),
    )
    paper = paper_table("table13_box_noise").set_index(["model", "noise_scale"])
    paper = paper.rename(columns={f"hq4_{key}": f"hq4 {label}" for label, key in METRICS})
    paper.index = _rounded_index(paper.index, "noise_scale")
    notes = ["Noisy box prompts: our average over the HQ datasets beside the paper's Table 13 (ViT-L)."]
    notes += _coverage_notes(datasets)
    table = _compare(ours, paper, list(ours.columns), notes, toy=_is_toy(datasets))
    if intervals is None:
        return table
    _check_intervals(intervals, ["noise_scale"])
    average = gain_columns(intervals).xs("average", level="dataset")
    gains = {}
    for label, _ in METRICS:
        cells = average.xs(label, level="metric")
        keys = [(intervals.attrs["models"][1], scale) for scale in cells.index]
        cells.index = _rounded_index(pd.MultiIndex.from_tuples(keys, names=["model", "noise_scale"]), "noise_scale")
        gains[f"hq4 {label}"] = cells
    return _with_gains(table, gains, intervals)


def compare_points(summary: pd.DataFrame, intervals: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Our point-prompt results beside the paper's Figure 5 (mBIoU on COIFT and DIS-VD).

    Arguments:
      summary (pd.DataFrame): `hq_benchmark.summarize(rows, ["pos_points", "neg_points"])` output: indexed by
        (model, pos_points, neg_points), with "<dataset> mBIoU" for COIFT and DIS5K-VD or Toy-COIFT and Toy-DIS.
      intervals (pd.DataFrame or None): `paired_bootstrap(rows, ["pos_points", "neg_points"])` of the same rows.

    Returns:
      pd.DataFrame indexed by (dataset, model, pos_points, neg_points) with the paper's dataset names (COIFT,
        DIS-VD), quantity "mBIoU" with kinds ours, paper, diff, and with `intervals` gain, gain 95% CI, wins.
        Our other datasets are not in Figure 5; the caption names them.
    """
    _check_index(summary, ["model", "pos_points", "neg_points"])
    datasets = _paper_datasets(summary.columns, ("mIoU", "mBIoU"))
    shown = {ours: FIGURE5_DATASETS[paper] for ours, paper in datasets.items() if paper in FIGURE5_DATASETS}
    if not shown:
        raise ValueError(
            f"Figure 5 covers COIFT and DIS-VD, but the summary has neither (datasets: {', '.join(datasets)}): "
            "evaluate points on COIFT/DIS5K-VD or Toy-COIFT/Toy-DIS"
        )
    parts = []
    for ours_name, paper_name in shown.items():
        part = summary[[f"{ours_name} mBIoU"]].rename(columns={f"{ours_name} mBIoU": "mBIoU"}).reset_index()
        part.insert(0, "dataset", paper_name)
        parts.append(part)
    ours = pd.concat(parts, ignore_index=True).set_index(["dataset", "model", "pos_points", "neg_points"])
    paper = paper_table("fig5_points_mbiou").rename(columns={"mbiou": "mBIoU"})
    paper = paper.set_index(["dataset", "model", "pos_points", "neg_points"])
    notes = ["Point prompts: our mBIoU beside the paper's Figure 5 (ViT-L)."]
    left_out = [name for name in datasets if name not in shown]
    if left_out:
        notes.append(f"Not in Figure 5, so not shown: {', '.join(left_out)}.")
    table = _compare(ours, paper, ["mBIoU"], notes, toy=_is_toy(datasets))
    if intervals is None:
        return table
    _check_intervals(intervals, ["pos_points", "neg_points"])
    cells = gain_columns(intervals).xs("mBIoU", level="metric").reset_index()
    cells = cells[cells["dataset"].isin(list(shown))]
    cells = cells.assign(dataset=cells["dataset"].map(shown), model=intervals.attrs["models"][1])
    return _with_gains(table, {"mBIoU": cells.set_index(list(table.index.names))}, intervals)


BACKBONE_QUANTITIES = {
    "hq4_miou": "hq4 mIoU", "hq4_mbiou": "hq4 mBIoU", "coco_ap": "COCO AP", "coco_ap_b": "COCO AP_B",
    "params_learnable_mb": "learnable MB", "fps": "FPS", "memory_gb": "memory GB",
}


# The paper's names of its vit_tiny rows; ours are SAM and HQ-SAM on every backbone, the backbone telling them apart.
PAPER_TINY_NAMES = {"MobileSAM": "SAM", "Light HQ-SAM": "HQ-SAM"}


def compare_backbones(
    rows: Union[pd.DataFrame, Sequence[Mapping[str, object]]], paper_backbone: Optional[str] = None
) -> pd.DataFrame:
    """Our numbers per backbone beside the paper's Table 10.

    Arguments:
      rows (pd.DataFrame or list of dicts): one row per (model, backbone) with any of the columns hq4_miou,
        hq4_mbiou, coco_ap, coco_ap_b, params_learnable_mb, fps, memory_gb (the paper's names and units);
        a column we lack, or a None in it, is NaN as ours.
      paper_backbone (str or None): the paper's backbone to compare our rows of backbones it has not (the toy
        model) with, e.g. "vit_l"; rows of its own backbones always match by name. None: match by name only.

    Returns:
      pd.DataFrame indexed by (model, backbone), quantities hq4 mIoU, hq4 mBIoU, COCO AP, COCO AP_B, learnable MB,
        FPS, memory GB. A row the paper has not has NaN as the paper's.
    """
    ours = pd.DataFrame(list(rows) if not isinstance(rows, pd.DataFrame) else rows)
    missing = [column for column in ("model", "backbone") if column not in ours.columns]
    if missing:
        raise ValueError(f"rows lack the columns {missing}; they have {list(ours.columns)}")
    unknown = [c for c in ours.columns if c not in ("model", "backbone") and c not in BACKBONE_QUANTITIES]
    if unknown:
        raise ValueError(f"rows have columns Table 10 does not report: {unknown}; known: {list(BACKBONE_QUANTITIES)}")
    ours = ours.set_index(["model", "backbone"]).rename(columns=BACKBONE_QUANTITIES)
    ours = ours.reindex(columns=list(BACKBONE_QUANTITIES.values())).apply(pd.to_numeric, errors="raise")
    paper = paper_table("table10_backbones").set_index(["model", "backbone"]).rename(columns=BACKBONE_QUANTITIES)
    paper = paper[list(BACKBONE_QUANTITIES.values())].rename(index=PAPER_TINY_NAMES, level="model")
    notes = ["Backbones: ours beside the paper's Table 10."]
    if paper_backbone is not None:
        known = _backbones(paper)
        if paper_backbone not in known:
            raise ValueError(f"the paper has no backbone {paper_backbone!r}: choose one of {known}")
        keys = [(model, backbone if backbone in known else paper_backbone) for model, backbone in ours.index]
        lookup = pd.MultiIndex.from_tuples(keys, names=paper.index.names)
        paper = paper.reindex(lookup).set_axis(ours.index)
        stand_ins = sorted({backbone for _, backbone in ours.index if backbone not in known})
        if stand_ins:
            notes.append(f"Rows of {', '.join(stand_ins)} are compared with the paper's {paper_backbone}.")
    backbones = set(ours.index.get_level_values("backbone"))
    return _compare(ours, paper, list(BACKBONE_QUANTITIES.values()), notes, toy="toy" in backbones)


ABLATION_QUANTITIES = {"hq4 mIoU": "hq4_miou", "hq4 mBIoU": "hq4_mbiou", "COCO AP": "coco_ap", "COCO AP_B": "coco_ap_b"}


def compare_ablations(summary: pd.DataFrame, paper_name: str, labels: Mapping[str, str], toy: bool,
                      margin: Optional[str] = None) -> pd.DataFrame:
    """Our ablation models beside one of the paper's ablation tables (Table 3 or 4).

    Arguments:
      summary (pd.DataFrame): indexed by our model name, columns among ABLATION_QUANTITIES' keys (a quantity the
        paper's table lacks is left out), and, with `margin`, the columns "<margin>", "<margin> 95% CI" and
        "<margin> wins" (our models only).
      paper_name (str): the paper's table, e.g. "table3_hq_features_ablation" (`paper_table`); its first column
        names the rows.
      labels (mapping): our model names, in the table's order, to the paper's row labels.
      toy (bool): our numbers come from the toy profile (the caption says so).

    Returns:
      pd.DataFrame indexed by "<paper label> [<our name>]" (or the label alone when they are the same), columns
        (quantity, kind) as the other comparisons, then (margin, "ours"), (margin 95% CI, "ours") and (margin
        wins, "ours").
    """
    missing = [name for name in labels if name not in summary.index]
    if missing:
        raise ValueError(f"the summary has no rows {missing}; its rows are {list(summary.index)}")
    paper = paper_table(paper_name)
    paper = paper.set_index(paper.columns[0]).rename(columns={v: k for k, v in ABLATION_QUANTITIES.items()})
    unknown = sorted(set(labels.values()) - set(paper.index))
    if unknown:
        raise ValueError(f"{paper_name} has no rows {unknown}; its rows are {list(paper.index)}")
    quantities = [q for q in ABLATION_QUANTITIES if q in paper.columns and q in summary.columns]
    index = pd.Index([label if label == name else f"{label} [{name}]" for name, label in labels.items()],
                     name="model")
    ours = summary.loc[list(labels), quantities].set_axis(index)
    table = _compare(ours, paper.loc[list(labels.values())].set_axis(index), quantities,
                     [f"Our ablation models beside the paper's {paper_name.split('_')[0].replace('table', 'Table ')} "
                      "(ViT-L), each trained by the same recipe and evaluated by the same protocol; [name]: our "
                      "variant (hqsam train variant=NAME)."], toy)
    if margin is not None:
        for suffix in ("", " 95% CI", " wins"):
            table[(f"{margin}{suffix}", "ours")] = summary.loc[list(labels), f"{margin}{suffix}"].to_numpy()
        table.attrs["caption"] += (f" {margin}: HQ-SAM's boundary mIoU minus the row's, with its 95% paired "
                                   "bootstrap interval over images and the images HQ-SAM scores above it.")
    return table


COMPUTE_QUANTITIES = ("learnable MB", "FPS", "memory GB", "FPS % of SAM")


def compare_compute(speed: Mapping[str, object]) -> pd.DataFrame:
    """Our speed and sizes beside the paper's Table 1 (SAM and HQ-SAM, ViT-L).

    Arguments:
      speed (dict): `measure_speed` output ("model_type", "device", and per model "fps", "peak_memory_gb",
        "params_learnable_mb").

    Returns:
      pd.DataFrame indexed by model, quantities learnable MB, FPS, memory GB (NaN when not measured, as on the
        CPU) and FPS % of SAM (the one speed number that compares across machines).
    """
    models = [name for name in ("SAM", "HQ-SAM") if name in speed]
    if not models:
        raise ValueError(
            f"speed has neither 'SAM' nor 'HQ-SAM' results (keys: {list(speed)}): pass measure_speed's output"
        )
    ours = pd.DataFrame(
        {
            "learnable MB": [_number(speed[m].get("params_learnable_mb")) for m in models],
            "FPS": [_number(speed[m].get("fps")) for m in models],
            "memory GB": [_number(speed[m].get("peak_memory_gb")) for m in models],
        },
        index=pd.Index(models, name="model"),
    )
    paper = paper_table("table1_compute").rename(
        columns={"method": "model", "learnable_params_mb": "learnable MB", "fps": "FPS", "memory_gb": "memory GB"}
    ).set_index("model")
    for table in (ours, paper):
        table["FPS % of SAM"] = table["FPS"] / table["FPS"].get("SAM", np.nan) * 100
    model_type, device = speed.get("model_type", "unknown"), speed.get("device", "unknown")
    notes = [f"Compute: ours ({model_type} on {device}) beside the paper's Table 1 (ViT-L)."]
    if model_type not in ("vit_l", "toy"):
        notes.append(f"Our backbone is {model_type}, the paper's ViT-L: sizes differ by design.")
    return _compare(ours, paper, list(COMPUTE_QUANTITIES), notes, toy=model_type == "toy")


def model_gains(
    table: pd.DataFrame, baseline: str = "SAM", model: str = "HQ-SAM", intervals: Optional[pd.DataFrame] = None
) -> pd.DataFrame:
    """A model-indexed comparison (`compare_hq_datasets`) on its side, to read the gain at a glance: one row per
    quantity, columns (baseline, model, gain = model - baseline) for ours, then for the paper.

    Arguments:
      intervals (pd.DataFrame or None): `paired_bootstrap(rows)` of the rows behind the table (our dataset names).

    Returns:
      pd.DataFrame indexed by quantity, columns (name, kind) with name in (baseline, model, "gain") and kind in
        ("ours", "paper"), ours first; with `intervals`, ("gain 95% CI", "ours") and ("wins", "ours") follow
        ("gain", "ours"). The caption is the table's, with a sentence on the gain columns.
    """
    if not isinstance(table.columns, pd.MultiIndex) or list(table.columns.names) != ["quantity", "kind"]:
        raise ValueError("model_gains needs a comparison table with (quantity, kind) columns, from compare_*")
    missing = [name for name in (baseline, model) if name not in table.index]
    if missing:
        raise ValueError(f"the table has no rows {missing}; its rows are {list(table.index)}")
    quantities = list(dict.fromkeys(table.columns.get_level_values("quantity")))
    cells, notes = pd.DataFrame(), [f"Gain: {model} minus {baseline}."]
    if intervals is not None:
        _check_intervals(intervals, [], (baseline, model))
        cells = gain_columns(intervals).drop(columns="gain")
        cells.index = [f"{DATASET_ALIASES.get(dataset, dataset)} {metric}" for dataset, metric in cells.index]
        cells, notes = cells.reindex(quantities), notes + [interval_note(intervals)]
    columns = {}
    for kind in ("ours", "paper"):
        values = table.xs(kind, axis=1, level="kind")[quantities]
        columns[(baseline, kind)] = values.loc[baseline]
        columns[(model, kind)] = values.loc[model]
        columns[("gain", kind)] = values.loc[model] - values.loc[baseline]
        if kind == "ours":
            columns.update({(name, kind): cells[name] for name in cells.columns})
    gains = pd.DataFrame(columns)
    gains.index.name = "quantity"
    gains.columns = pd.MultiIndex.from_tuples(gains.columns, names=["quantity", "kind"])
    caption = " ".join([table.attrs.get("caption", ""), *notes]).strip()
    gains.attrs = {**table.attrs, "caption": caption}
    return gains


# --------------------------------------------------------------------------------------------------- helpers


def _paper_datasets(columns: Sequence[str], labels: Sequence[str]) -> Dict[str, str]:
    # Our dataset names (from "<dataset> <label>" columns, "average" aside) -> the paper's; unknown ones are errors.
    names = []
    for column in columns:
        dataset, _, label = str(column).rpartition(" ")
        if label in labels and dataset != "average" and dataset not in names:
            names.append(dataset)
    unknown = [name for name in names if name not in DATASET_ALIASES]
    if unknown:
        raise ValueError(
            f"datasets {unknown} have no counterpart in the paper; known names: {', '.join(DATASET_ALIASES)}"
        )
    mapped = {name: DATASET_ALIASES[name] for name in names}
    twice = [paper for paper in set(mapped.values()) if list(mapped.values()).count(paper) > 1]
    if twice:
        raise ValueError(f"several of our datasets {list(mapped)} stand for the same paper dataset(s) {twice}")
    return mapped


def _coverage_notes(datasets: Mapping[str, str]) -> List[str]:
    missing = [name for name, _ in PAPER_DATASETS if name not in datasets.values()]
    if not missing:
        return []
    return [f"We did not evaluate {', '.join(missing)}: our average covers {len(datasets)} of the paper's 4 datasets."]


def _is_toy(datasets: Mapping[str, str]) -> bool:
    return any(name.startswith("Toy-") for name in datasets)


def _check_index(summary: pd.DataFrame, names: List[str]) -> None:
    if list(summary.index.names) != names:
        raise ValueError(
            f"the summary must be indexed by {names} (hq_benchmark.summarize(rows, by={names[1:]})), "
            f"got {list(summary.index.names)}"
        )


def _check_intervals(intervals: pd.DataFrame, by: List[str], models: Optional[Sequence[str]] = None) -> None:
    if list(intervals.index.names) != [*by, "dataset", "metric"] or "models" not in intervals.attrs:
        raise ValueError(
            f"intervals must be paired_bootstrap(rows, by={by}) output, indexed by {[*by, 'dataset', 'metric']}; "
            f"got index {list(intervals.index.names)}"
        )
    if models is not None and tuple(intervals.attrs["models"]) != tuple(models):
        raise ValueError(f"the intervals compare {intervals.attrs['models']}, the table {tuple(models)}")


def _with_gains(table: pd.DataFrame, gains: Mapping[str, pd.DataFrame], intervals: pd.DataFrame) -> pd.DataFrame:
    # After each quantity's kinds, its `gain_columns` cells (indexed as the table; rows without any get NaN).
    columns = {}
    for quantity in dict.fromkeys(table.columns.get_level_values("quantity")):
        columns.update({(quantity, kind): table[(quantity, kind)] for kind in table[quantity].columns})
        cells = gains[quantity].reindex(table.index)
        if cells.isna().all().all():
            raise ValueError(f"the intervals ({intervals.attrs['models']}) match no row of the table for {quantity}")
        columns.update({(quantity, kind): cells[kind] for kind in cells.columns})
    wider = pd.DataFrame(columns, index=table.index)
    wider.columns = pd.MultiIndex.from_tuples(wider.columns, names=["quantity", "kind"])
    wider.attrs = {**table.attrs, "caption": f"{table.attrs['caption']} {interval_note(intervals)}"}
    return wider


def _rounded_index(index: pd.MultiIndex, level: str) -> pd.MultiIndex:
    # Float settings (noise scales) matched after rounding, so 0.2 from arithmetic meets the paper's 0.2.
    position = index.names.index(level)
    tuples = [tuple(round(float(v), 6) if i == position else v for i, v in enumerate(key)) for key in index]
    return pd.MultiIndex.from_tuples(tuples, names=index.names)


def _backbones(paper: pd.DataFrame) -> List[str]:
    return list(dict.fromkeys(paper.index.get_level_values("backbone")))


def _number(value: object) -> float:
    return float("nan") if value is None else float(value)


def _compare(
    ours: pd.DataFrame, paper: pd.DataFrame, quantities: List[str], notes: List[str], toy: bool
) -> pd.DataFrame:
    # Rows are ours (in our order); the paper's values are looked up by the same index, NaN where it has none.
    ours, paper = ours.reindex(columns=quantities), paper.reindex(ours.index)
    columns = {}
    for quantity in quantities:
        mine = pd.to_numeric(ours[quantity], errors="raise").astype(float)
        theirs = pd.to_numeric(paper[quantity], errors="raise").astype(float)
        columns[(quantity, "ours")], columns[(quantity, "paper")] = mine, theirs
        columns[(quantity, "diff")] = mine - theirs
    table = pd.DataFrame(columns, index=ours.index)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["quantity", "kind"])
    table.attrs["caption"] = " ".join(notes + ([TOY_NOTE] if toy else []))
    table.attrs["profile"] = "toy" if toy else "paper"
    return table
