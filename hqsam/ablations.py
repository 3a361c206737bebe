"""The paper's ablations on a profile (notebook 06): each variant of `hqsam.modeling.VARIANTS` trained by the one
trainer with the profile's recipe, evaluated by the same protocols as HQ-SAM (the HQ benchmark with GT boxes, COCO
with the detector's boxes), and set beside HQ-SAM and SAM from notebook 04's results.

A variant's run and its evaluations live in runs/<profile>/ablations/<variant>/ (training outputs, hq_rows.csv,
coco/); the summary, one row per model, is results/<profile>/ablations.csv. HQ-SAM's margin over each variant
in boundary mIoU carries a paired bootstrap interval over images (`hqsam.report.paired_bootstrap`).
"""

from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import pandas as pd

from . import provenance
from .build import build_hqsam
from .data import LAYOUTS, read_layout
from .eval import evaluate_hq_datasets, summarize
from .eval.coco import evaluate_coco
from .modeling import DEFAULT_VARIANT, VARIANTS
from .modeling.variants import TABLE3, TABLE4
from .notebook import RESULTS, coco_inputs, evaluation_settings, train_hqsam
from .profiles import Profile
from .report import compare_ablations, paired_bootstrap

ABLATIONS = tuple(name for name in VARIANTS if name != DEFAULT_VARIANT)  # notebook 06's default: all of them
HQ_ROWS, COCO_DIR = "hq_rows.csv", "coco"
SUMMARY = "ablations.csv"
MAIN_MODELS = ("SAM", DEFAULT_VARIANT)  # the summary's rows from notebook 04's results: SAM, and HQ-SAM itself
QUANTITIES = ("hq4 mIoU", "hq4 mBIoU", "COCO AP", "COCO AP_B")
MARGIN = "HQ-SAM minus it, mBIoU"


class Ablations(NamedTuple):
    summary: pd.DataFrame  # indexed by variant (SAM first, hq_sam last): QUANTITIES, the margin and its interval
    rows: pd.DataFrame  # the HQ benchmark's per-image rows of every model, `model` the variant's name ("SAM" too)
    made: dict  # the provenance of the summary


def ablation_dir(paths: Profile, variant: str) -> Path:
    """Where a variant's training run and evaluations go: runs/<profile>/ablations/<variant>."""
    return paths.runs / "ablations" / variant


def run_ablation(paths: Profile, variant: str, device: str, quick: bool = False, ngpus: int = 1,
                 epochs: Optional[int] = None, precision: Optional[str] = None,
                 max_images: Optional[int] = None) -> Path:
    """Train `variant` as notebook 02 trains HQ-SAM (`hqsam.notebook.train_hqsam`: resumed when its saved run has
    the same provenance) into `ablation_dir`, then evaluate its export as notebook 04 evaluates HQ-SAM: the HQ
    benchmark (resumable rows) and COCO (journaled); returns the folder."""
    if variant not in ABLATIONS:
        raise ValueError(f"{variant!r} is not an ablation: choose among {', '.join(ABLATIONS)}")
    folder = ablation_dir(paths, variant)
    train_hqsam(paths, device, quick, ngpus=ngpus, epochs=epochs, precision=precision,
                overrides=[f"variant={variant}", f"output_dir={folder}"])
    settings = evaluation_settings(paths, quick, max_images, precision=precision)
    model = build_hqsam("auto", folder / paths.hq_checkpoint.name, variant=variant).to(device)
    sources = read_layout(paths.data_root, LAYOUTS[paths.layout], split="val")
    evaluate_hq_datasets(model, sources, settings.max_images, progress=False, rows_file=folder / HQ_ROWS,
                         precision=settings.precision)
    evaluate_coco(model, *coco_inputs(paths), output_dir=folder / COCO_DIR, max_images=settings.max_images,
                  progress=False, precision=settings.precision)
    return folder


def read_ablations(paths: Profile, variants: Sequence[str] = ABLATIONS) -> Ablations:
    """The summary of `variants` (run by `run_ablation`) beside SAM and HQ-SAM from notebook 04's results, saved
    as results/<profile>/ablations.csv with its provenance.

    Every model's rows must come from the same data, precision, device and image limit, and each variant's SAM rows
    must equal notebook 04's (SAM is frozen in every variant): a ValueError says which disagree and what to rerun."""
    hq_files = {"main": paths.results / RESULTS["hq_rows"]}
    coco_files = {"main": paths.results / RESULTS["coco"]}
    for variant in variants:
        hq_files[variant] = ablation_dir(paths, variant) / HQ_ROWS
        coco_files[variant] = ablation_dir(paths, variant) / COCO_DIR / "metrics.csv"
    made = ablation_provenance(hq_files, coco_files)
    main_rows = pd.read_csv(hq_files["main"])
    main_sam = main_rows[main_rows["model"] == "SAM"].reset_index(drop=True)
    rows = [main_rows.replace({"model": {"HQ-SAM": DEFAULT_VARIANT}})]
    coco_tables = {"main": pd.read_csv(coco_files["main"], index_col=0)}
    for variant in variants:
        found = pd.read_csv(hq_files[variant])
        sam = found[found["model"] == "SAM"].reset_index(drop=True)
        if not sam.equals(main_sam):
            raise ValueError(f"{hq_files[variant]}: its SAM rows differ from {hq_files['main']}'s, though SAM is "
                             "frozen: rerun notebook 04 and this notebook on the same data and settings")
        rows.append(found[found["model"] == "HQ-SAM"].assign(model=variant))
        coco_tables[variant] = pd.read_csv(coco_files[variant], index_col=0)
    rows = pd.concat(rows, ignore_index=True)
    order = ["SAM", *variants, DEFAULT_VARIANT]
    averages = summarize(rows).reindex(order)
    summary = pd.DataFrame({"hq4 mIoU": averages["average mIoU"], "hq4 mBIoU": averages["average mBIoU"]})
    coco = [_coco_row(coco_tables, name) for name in order]
    summary["COCO AP"] = [float(row["AP"]) for row in coco]
    summary["COCO AP_B"] = [float(row["AP_B"]) for row in coco]
    margins = _margins(rows, variants)
    summary = summary.join(margins)
    summary.index.name = "variant"
    provenance.save_csv(summary, paths.results / SUMMARY, made)
    return Ablations(summary, rows, made)


def ablation_table(ablations: Ablations, paper_name: str, toy: bool) -> pd.DataFrame:
    """Our models of the paper's table `paper_name` (TABLE3 or TABLE4: the variants that mirror one of its rows,
    with SAM first and HQ-SAM last) beside its rows (`hqsam.report.compare_ablations`)."""
    if paper_name not in (TABLE3, TABLE4):
        raise ValueError(f"the ablation tables are {TABLE3} and {TABLE4}, got {paper_name!r}")
    labels = {"SAM": "SAM"}
    for name in ablations.summary.index:
        label = dict(VARIANTS[name].paper).get(paper_name) if name in VARIANTS else None
        if label is not None and name != DEFAULT_VARIANT:
            labels[name] = label
    labels[DEFAULT_VARIANT] = dict(VARIANTS[DEFAULT_VARIANT].paper)[paper_name]
    return compare_ablations(ablations.summary, paper_name, labels, toy, margin=MARGIN)


def ablation_provenance(hq_files: Dict[str, Path], coco_files: Dict[str, Path]) -> dict:
    """The summary's provenance: the scope the HQ rows share and the scope the COCO results share, but for the
    model, which is each input's own (recorded per input). A ValueError names two inputs of different scopes."""
    scope: Dict[str, object] = {}
    for kind, files in (("hq", hq_files), ("coco", coco_files)):
        shared = None
        for name, path in files.items():
            made = provenance.read_provenance(path)
            if made is None:
                raise ValueError(f"{path} has no provenance or is missing: run notebook 04 (main) or this notebook "
                                 f"({name})")
            own = {key: value for key, value in made["scope"].items() if key != "model"}
            if shared is not None and own != shared[1]:
                raise ValueError(f"{path} and {shared[0]} were evaluated on other data or settings: rerun notebook 04 "
                                 "and this notebook with the same ones")
            shared = shared or (path, own)
            scope.setdefault("models", {})[f"{kind}:{name}"] = made["scope"].get("model")
        scope[kind] = shared[1]
    return provenance.describe("ablations", scope, {"variants": [n for n in hq_files if n != "main"]}, __name__)


def _coco_row(tables: Dict[str, pd.DataFrame], name: str) -> pd.Series:
    """A model's COCO metrics: SAM's and HQ-SAM's from notebook 04's table, a variant's from its own (its row
    "HQ-SAM" is the variant's output)."""
    if name in MAIN_MODELS:
        return tables["main"].loc["SAM" if name == "SAM" else "HQ-SAM"]
    return tables[name].loc["HQ-SAM"]


def _margins(rows: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """Per variant, HQ-SAM's boundary mIoU minus the variant's (average of the dataset means) with its 95% paired
    bootstrap interval and the images HQ-SAM wins."""
    found: List[Dict[str, object]] = []
    for variant in ["SAM", *variants]:
        interval = paired_bootstrap(rows, baseline=variant, model=DEFAULT_VARIANT).loc[("average", "mBIoU")]
        found.append({"variant": variant, MARGIN: interval["gain"],
                      f"{MARGIN} 95% CI": f"[{interval['gain low']:.1f}, {interval['gain high']:.1f}]",
                      f"{MARGIN} wins": f"{int(interval['wins'])}/{int(interval['images'])}"})
    return pd.DataFrame(found).set_index("variant")
