"""Notebook 06's summary and tables: the ablations beside SAM and HQ-SAM, checked to share data and SAM's rows,
and set beside the paper's Tables 3 and 4 (values looked up by row, differences, HQ-SAM's margin with its
interval)."""

import numpy as np
import pandas as pd
import pytest

from hqsam import provenance
from hqsam.ablations import (
    COCO_DIR, HQ_ROWS, MARGIN, SUMMARY, Ablations, ablation_dir, ablation_table, read_ablations,
)
from hqsam.modeling.variants import TABLE3, TABLE4
from hqsam.notebook import RESULTS
from hqsam.profiles import get_profile
from hqsam.report import paired_bootstrap, paper_table

DATASETS = ("Toy-DIS", "Toy-COIFT")


def rows_of(model: str, quality: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    images = [(dataset, f"{dataset}/{i}") for dataset in DATASETS for i in range(6)]
    return pd.DataFrame({"dataset": [d for d, _ in images], "image": [i for _, i in images], "model": model,
                         "iou": np.clip(quality + rng.normal(0, 0.05, len(images)), 0, 1),
                         "biou": np.clip(quality - 0.2 + rng.normal(0, 0.05, len(images)), 0, 1)})


def write_evaluation(rows_file, coco_file, rows: pd.DataFrame, coco: dict, model_sha: str) -> None:
    """HQ benchmark rows and COCO metrics as notebook 04 or `run_ablation` leave them, with a provenance each."""
    made = {"kind": "hq_benchmark", "scope": {"model": {"sha256": model_sha}, "data": "toy world", "precision": "fp32"},
            "settings": {}, "code": {}}
    rows_file.parent.mkdir(parents=True, exist_ok=True)
    provenance.save_csv(rows, rows_file, made, index=False)
    coco_file.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(coco).T.rename_axis("model").to_csv(coco_file)
    provenance.write_provenance(coco_file, {**made, "kind": "coco", "scope": {**made["scope"], "data": "toy coco"}})


@pytest.fixture
def evaluated(tmp_path):
    paths = get_profile("toy", tmp_path)
    sam = rows_of("SAM", 0.6, 0)
    write_evaluation(paths.results / RESULTS["hq_rows"], paths.results / RESULTS["coco"],
                     pd.concat([sam, rows_of("HQ-SAM", 0.8, 1)]),
                     {"SAM": {"AP": 30.0, "AP_B": 10.0}, "HQ-SAM": {"AP": 33.0, "AP_B": 14.0}}, "hq")
    for seed, (variant, quality) in enumerate((("hq_decoder", 0.7), ("finetune_decoder", 0.75)), start=2):
        folder = ablation_dir(paths, variant)
        write_evaluation(folder / HQ_ROWS, folder / COCO_DIR / "metrics.csv", pd.concat([sam, rows_of("HQ-SAM", quality, seed)]),
                         {"SAM": {"AP": 30.0, "AP_B": 10.0}, "HQ-SAM": {"AP": 31.0 + seed, "AP_B": 11.0}}, variant)
    return paths


def test_the_summary_puts_each_variant_between_sam_and_hq_sam_with_hq_sams_margin(evaluated):
    ablations = read_ablations(evaluated, ["hq_decoder", "finetune_decoder"])
    summary = ablations.summary
    assert list(summary.index) == ["SAM", "hq_decoder", "finetune_decoder", "hq_sam"]
    rows = ablations.rows
    for name in summary.index:
        mine = rows[rows["model"] == name]
        assert summary.loc[name, "hq4 mBIoU"] == pytest.approx(100 * mine.groupby("dataset")["biou"].mean().mean())
    assert summary.loc["finetune_decoder", "COCO AP"] == 34.0 and summary.loc["hq_sam", "COCO AP_B"] == 14.0
    margin = summary.loc["hq_decoder", MARGIN]
    assert margin == pytest.approx(summary.loc["hq_sam", "hq4 mBIoU"] - summary.loc["hq_decoder", "hq4 mBIoU"])
    bootstrap = paired_bootstrap(rows, baseline="hq_decoder", model="hq_sam").loc[("average", "mBIoU")]
    assert summary.loc["hq_decoder", f"{MARGIN} 95% CI"] == f"[{bootstrap['gain low']:.1f}, {bootstrap['gain high']:.1f}]"
    assert summary.loc["hq_decoder", f"{MARGIN} wins"].endswith("/12")
    saved = pd.read_csv(evaluated.results / SUMMARY, index_col=0)
    assert list(saved.index) == list(summary.index)
    assert provenance.read_provenance(evaluated.results / SUMMARY) == ablations.made
    assert ablations.made["scope"]["hq"] == {"data": "toy world", "precision": "fp32"}
    assert ablations.made["scope"]["models"]["hq:hq_decoder"] == {"sha256": "hq_decoder"}


def test_results_of_other_data_or_another_sam_are_refused(evaluated):
    folder = ablation_dir(evaluated, "hq_decoder")
    made = provenance.read_provenance(folder / HQ_ROWS)
    provenance.write_provenance(folder / HQ_ROWS, {**made, "scope": {**made["scope"], "data": "other"}})
    with pytest.raises(ValueError, match="evaluated on other data or settings"):
        read_ablations(evaluated, ["hq_decoder"])
    provenance.write_provenance(folder / HQ_ROWS, made)
    rows = pd.read_csv(folder / HQ_ROWS)
    rows.loc[rows.index[0], "biou"] = 0.0  # a SAM row
    provenance.save_csv(rows, folder / HQ_ROWS, made, index=False)
    with pytest.raises(ValueError, match="SAM rows differ"):
        read_ablations(evaluated, ["hq_decoder"])
    with pytest.raises(ValueError, match="no provenance or is missing"):
        read_ablations(evaluated, ["hq_decoder_conv"])


def test_the_tables_set_our_rows_beside_the_papers(evaluated):
    ablations = read_ablations(evaluated, ["hq_decoder", "finetune_decoder"])
    table3 = ablation_table(ablations, TABLE3, toy=True)
    assert list(table3.index) == ["SAM", "HQ-Output Token on the decoder mask feature [hq_decoder]",
                                  "HQ-SAM (full global-local fusion) [hq_sam]"]
    paper = paper_table(TABLE3).set_index("variant")
    assert table3.loc["SAM", ("hq4 mBIoU", "paper")] == paper.loc["SAM", "hq4_mbiou"]
    row = "HQ-Output Token on the decoder mask feature [hq_decoder]"
    assert table3.loc[row, ("hq4 mIoU", "diff")] == pytest.approx(
        ablations.summary.loc["hq_decoder", "hq4 mIoU"] - paper.loc["HQ-Output Token on the decoder mask feature",
                                                                     "hq4_miou"])
    assert "COCO AP" not in table3.columns.get_level_values("quantity")  # the paper's Table 3 has none
    assert "toy" in table3.attrs["caption"] and MARGIN in table3.attrs["caption"]

    table4 = ablation_table(ablations, TABLE4, toy=False)
    assert list(table4.index) == ["SAM", "Finetune SAM's decoder [finetune_decoder]", "HQ-SAM [hq_sam]"]
    assert table4.loc["Finetune SAM's decoder [finetune_decoder]", ("COCO AP_B", "paper")] == 9.0
    row = "Finetune SAM's decoder [finetune_decoder]"
    assert table4.loc[row, (f"{MARGIN} wins", "ours")] == ablations.summary.loc["finetune_decoder", f"{MARGIN} wins"]
    assert np.isnan(table4.loc["HQ-SAM [hq_sam]", (MARGIN, "ours")])
    with pytest.raises(ValueError, match="ablation tables are"):
        ablation_table(Ablations(ablations.summary, ablations.rows, {}), "table2_hq_token_ablation", toy=True)
