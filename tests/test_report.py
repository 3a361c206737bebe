"""hqsam.report: the packaged paper tables, the comparison builders and their Markdown, LaTeX and CSV forms."""

import csv
import math
from hashlib import sha256
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hqsam
from hqsam import report
from hqsam.data.layout import LAYOUTS

PACKAGED_TABLES = Path(hqsam.__file__).parent / "paper_tables"
# The transcription the packaged tables are copied from, where this checkout sits beside it (not in a clone).
SHARED_TABLES = Path(__file__).resolve().parents[2] / "shared" / "paper" / "tables"
# sha256 of each packaged table: a changed number fails here, with or without the shared transcription.
TABLE_DIGESTS = {
    "fig5_points_mbiou.csv": "db0b8348df9ba870dcd295c7796c163a676bc4edf467dd1db5351029b1743ef3",
    "hqseg44k_sources.csv": "263f7dc6ae4f8a31db3c40eafdb951b292590b1e4dc08377092bf48769196f00",
    "table10_backbones.csv": "76b0799813855b01fe8a19fef0c61ce52f1b35bf1b7ce8c21bb43c8ec0d78371",
    "table13_box_noise.csv": "0c4bd3236cf8eefb13531f0c226cf4dd9b8c8de9ee8a15aeb65b98ab302814fc",
    "table15_training_data.csv": "31306c4a2f8c8c62b6254dfda4d9531abbc62570a02e2a04fa252407b2eb69c7",
    "table1_compute.csv": "ed0b34f0559fa5bbcde712e6a7f4c0c5ce57aef060351edfcd036d4e62d9be09",
    "table2_hq_token_ablation.csv": "bb1f382ed66455a53cfcbd17227573c3feb58969dcd703ab3ffbcf68f01861d5",
    "table3_hq_features_ablation.csv": "fbfc1be74e5f75edc62b72a3a9e55e545791ad719fa0ee1c86a00b2f88088cb4",
    "table4_vs_finetuning.csv": "0e4a12c5939cfbb0230ce2398d5e05e31721c9b29f997c7cf3a7c25c88485a35",
    "table7_coco_lvis.csv": "367c96a8a487f1eeb11cde3f86e51c12d942884e0d06ab1fc819c8f8d24c1875",
}


def hand_summary(datasets=("Toy-DIS", "Toy-COIFT", "Toy-HRSOD", "Toy-Thin")) -> pd.DataFrame:
    # Distinct values per cell, so a mix-up of datasets, metrics or models changes the result.
    columns = {}
    for d, dataset in enumerate(datasets):
        columns[f"{dataset} mIoU"] = [50.0 + d, 60.0 + d]
        columns[f"{dataset} mBIoU"] = [40.0 + d, 55.0 + d]
    table = pd.DataFrame(columns, index=pd.Index(["SAM", "HQ-SAM"], name="model"))
    for label in ("mIoU", "mBIoU"):
        table[f"average {label}"] = table[[f"{d} {label}" for d in datasets]].mean(axis=1)
    return table


def test_packaged_tables_are_the_published_ones():
    packaged = sorted(path.name for path in PACKAGED_TABLES.glob("*.csv"))
    assert packaged == sorted(TABLE_DIGESTS)
    assert report.paper_table_names() == [name[: -len(".csv")] for name in packaged]
    for name in packaged:
        assert sha256((PACKAGED_TABLES / name).read_bytes()).hexdigest() == TABLE_DIGESTS[name], name
    if SHARED_TABLES.is_dir():
        assert sorted(path.name for path in SHARED_TABLES.glob("*.csv")) == packaged
        for name in packaged:
            assert (PACKAGED_TABLES / name).read_bytes() == (SHARED_TABLES / name).read_bytes(), name


def test_every_evaluation_set_of_a_layout_names_its_counterpart_in_the_paper():
    paper_names = sorted(name for name, _ in report.PAPER_DATASETS)
    for layout in LAYOUTS.values():
        assert sorted(spec.paper_name for spec in layout if spec.split == "val") == paper_names
        assert all(spec.paper_name is None for spec in layout if spec.split == "train")
    assert report.DATASET_ALIASES == {
        "DIS5K-VD": "DIS5K-VD", "COIFT": "COIFT", "HRSOD": "HRSOD", "ThinObject5K-TE": "ThinObject5K-TE",
        "Toy-DIS": "DIS5K-VD", "Toy-COIFT": "COIFT", "Toy-HRSOD": "HRSOD", "Toy-Thin": "ThinObject5K-TE",
        "DIS-VD": "DIS5K-VD",  # Figure 5's name
    }


def test_paper_table_reads_the_csv_and_names_the_tables_when_unknown():
    table = report.paper_table("table13")
    with open(PACKAGED_TABLES / "table13_box_noise.csv", newline="") as file:
        records = list(csv.DictReader(file))
    assert list(table.columns) == list(records[0])
    assert table["hq4_miou"].tolist() == [float(r["hq4_miou"]) for r in records]
    pd.testing.assert_frame_equal(report.paper_table("table13_box_noise.csv"), table)
    with pytest.raises(ValueError, match="table2_hq_token_ablation"):
        report.paper_table("table99")


def test_compare_hq_datasets_puts_the_papers_table2_beside_ours():
    summary = hand_summary()
    table = report.compare_hq_datasets(summary)
    paper = {r["model"]: r for r in csv.DictReader(open(PACKAGED_TABLES / "table2_hq_token_ablation.csv"))}
    assert list(table.index) == ["SAM", "HQ-SAM"]
    assert table.loc["HQ-SAM", ("DIS5K-VD mIoU", "paper")] == 78.6
    pairs = [("Toy-DIS", "DIS5K-VD", "dis"), ("Toy-COIFT", "COIFT", "coift"), ("Toy-HRSOD", "HRSOD", "hrsod"),
             ("Toy-Thin", "ThinObject5K-TE", "thin"), ("average", "average", "avg")]
    for model in ("SAM", "HQ-SAM"):
        for ours_name, paper_name, prefix in pairs:
            for label in ("mIoU", "mBIoU"):
                ours = summary.loc[model, f"{ours_name} {label}"]
                published = float(paper[model][f"{prefix}_{label.lower()}"])
                row = table.loc[model]
                assert row[(f"{paper_name} {label}", "ours")] == ours
                assert row[(f"{paper_name} {label}", "paper")] == published
                assert row[(f"{paper_name} {label}", "diff")] == pytest.approx(ours - published)
    assert "toy" in table.attrs["caption"].lower() and table.attrs["profile"] == "toy"


def test_compare_hq_datasets_with_fewer_datasets_and_unknown_ones():
    table = report.compare_hq_datasets(hand_summary(("DIS5K-VD", "COIFT")))
    assert table[("HRSOD mIoU", "ours")].isna().all() and table[("HRSOD mIoU", "paper")].notna().all()
    assert "HRSOD" in table.attrs["caption"] and table.attrs["profile"] == "paper"
    with pytest.raises(ValueError, match="Toy-Other") as error:
        report.compare_hq_datasets(hand_summary(("Toy-DIS", "Toy-Other")))
    assert all(name in str(error.value) for name in report.DATASET_ALIASES)
    with pytest.raises(ValueError, match="same paper dataset"):
        report.compare_hq_datasets(hand_summary(("Toy-DIS", "DIS5K-VD")))


def test_model_gains_turns_the_comparison_on_its_side():
    summary = hand_summary()
    table = report.compare_hq_datasets(summary)
    gains = report.model_gains(table)
    paper = {r["model"]: r for r in csv.DictReader(open(PACKAGED_TABLES / "table2_hq_token_ablation.csv"))}
    assert list(gains.index) == list(dict.fromkeys(table.columns.get_level_values("quantity")))
    assert list(gains.columns) == [("SAM", "ours"), ("HQ-SAM", "ours"), ("gain", "ours"),
                                   ("SAM", "paper"), ("HQ-SAM", "paper"), ("gain", "paper")]
    row = gains.loc["COIFT mBIoU"]
    assert row[("gain", "ours")] == summary.loc["HQ-SAM", "Toy-COIFT mBIoU"] - summary.loc["SAM", "Toy-COIFT mBIoU"]
    assert row[("gain", "paper")] == pytest.approx(float(paper["HQ-SAM"]["coift_mbiou"]) - float(paper["SAM"]["coift_mbiou"]))
    assert gains.attrs["caption"].startswith(table.attrs["caption"]) and "HQ-SAM minus SAM" in gains.attrs["caption"]
    assert "| COIFT mBIoU | 41.0 | 56.0 | 15.0 |" in report.to_markdown(gains)
    with pytest.raises(ValueError, match="no rows"):
        report.model_gains(table, baseline="SAM 2")
    with pytest.raises(ValueError, match="compare_"):
        report.model_gains(summary)


def test_compare_box_noise_matches_scales_computed_by_arithmetic():
    index = pd.MultiIndex.from_tuples([("SAM", 0.1 + 0.1), ("HQ-SAM", 0.4)], names=["model", "noise_scale"])
    summary = pd.DataFrame({"Toy-DIS mIoU": [1.0, 2.0], "Toy-DIS mBIoU": [1.0, 2.0],
                            "average mIoU": [60.0, 70.0], "average mBIoU": [50.0, 61.0]}, index=index)
    table = report.compare_box_noise(summary)
    assert table[("hq4 mIoU", "paper")].tolist() == [65.7, 69.9]
    assert table[("hq4 mBIoU", "diff")].tolist() == pytest.approx([50.0 - 57.1, 61.0 - 60.3])
    with pytest.raises(ValueError, match="noise_scale"):
        report.compare_box_noise(summary.reset_index(level="noise_scale"))


def test_compare_points_uses_figure5_names_and_leaves_other_datasets_out_by_name():
    index = pd.MultiIndex.from_tuples([("SAM", 1, 0), ("HQ-SAM", 10, 5)], names=["model", "pos_points", "neg_points"])
    datasets = ["Toy-COIFT", "Toy-DIS", "Toy-Thin"]
    summary = pd.DataFrame({f"{d} {m}": [10.0 * i, 20.0 * i] for i, d in enumerate(datasets, 1)
                            for m in ("mIoU", "mBIoU")}, index=index)
    table = report.compare_points(summary)
    assert table.loc[("DIS-VD", "HQ-SAM", 10, 5), ("mBIoU", "paper")] == 70.0
    assert table.loc[("COIFT", "SAM", 1, 0), ("mBIoU", "ours")] == 10.0
    assert set(table.index.get_level_values("dataset")) == {"COIFT", "DIS-VD"}
    assert "Toy-Thin" in table.attrs["caption"]


def test_compare_backbones_and_compute_leave_unmeasured_values_nan():
    rows = [{"model": "HQ-SAM", "backbone": "vit_b", "hq4_miou": 86.0, "memory_gb": None}]
    table = report.compare_backbones(rows)
    assert table.loc[("HQ-SAM", "vit_b"), ("hq4 mIoU", "diff")] == pytest.approx(86.0 - 86.3)
    assert math.isnan(table.loc[("HQ-SAM", "vit_b"), ("memory GB", "ours")])
    toy = report.compare_backbones([{"model": "SAM", "backbone": "toy", "fps": 3.0},
                                    {"model": "HQ-SAM", "backbone": "vit_b", "fps": 9.0}], paper_backbone="vit_h")
    assert toy.loc[("SAM", "toy"), ("FPS", "paper")] == 3.5 and toy.attrs["profile"] == "toy"
    assert toy.loc[("HQ-SAM", "vit_b"), ("FPS", "paper")] == 9.8  # the paper's own backbones match by name
    assert "Rows of toy are compared with the paper's vit_h." in toy.attrs["caption"]
    with pytest.raises(ValueError, match="fps_gpu"):
        report.compare_backbones([{"model": "SAM", "backbone": "vit_b", "fps_gpu": 1.0}])

    speed = {"model_type": "vit_l", "device": "cuda",
             "SAM": {"fps": 4.0, "peak_memory_gb": None, "params_learnable_mb": 1191.0},
             "HQ-SAM": {"fps": 3.0, "peak_memory_gb": 7.0, "params_learnable_mb": 5.1}}
    compute = report.compare_compute(speed)
    assert compute.loc["HQ-SAM", ("FPS % of SAM", "ours")] == pytest.approx(75.0)
    assert compute.loc["HQ-SAM", ("FPS % of SAM", "paper")] == pytest.approx(4.8 / 5.0 * 100)
    assert math.isnan(compute.loc["SAM", ("memory GB", "ours")])
    assert compute.loc["HQ-SAM", ("memory GB", "diff")] == pytest.approx(7.0 - 7.6)


def test_markdown_has_a_row_per_model_and_a_header_per_column():
    table = report.compare_hq_datasets(hand_summary())
    lines = report.to_markdown(table, caption="Caption").strip().splitlines()
    assert lines[0] == "Caption"
    rows = [line for line in lines if line.startswith("|")]
    header, rule, body = rows[0], rows[1], rows[2:]
    cells = lambda line: line.strip("|").split(" | ")  # noqa: E731
    assert len(cells(header)) == len(cells(rule)) == 1 + 10 * 3
    assert [cells(row)[0].strip() for row in body] == ["SAM", "HQ-SAM"]
    hq = dict(zip((c.strip() for c in cells(header)), (c.strip() for c in cells(body[1]))))
    assert hq["DIS5K-VD mIoU (paper)"] == "78.6"
    assert hq["DIS5K-VD mIoU (diff)"] == f"{60.0 - 78.6:+.1f}"


def test_latex_escapes_specials_and_renders_nan_as_dashes():
    table = pd.DataFrame({"hq4_miou": [79.5, np.nan], "note": ["50% & #1", "a_b"]},
                         index=pd.Index(["SAM", "HQ-SAM"], name="model"))
    latex = report.to_latex(table, caption="ViT_L 100%", label="tab:x", digits=2)
    assert r"hq4\_miou" in latex and r"50\% \& \#1" in latex and r"a\_b" in latex
    assert r"\caption{ViT\_L 100\%}" in latex and r"\label{tab:x}" in latex
    assert r"HQ-SAM & -- & a\_b \\" in latex and r"SAM & 79.50 &" in latex
    assert r"\begin{tabular}{lrl}" in latex
    assert latex.count(r"\toprule") == latex.count(r"\midrule") == latex.count(r"\bottomrule") == 1
    grouped = report.to_latex(report.compare_hq_datasets(hand_summary(("DIS5K-VD",))))
    assert grouped.count(r"\multicolumn{3}{c}") == 10 and r"\multicolumn{3}{c}{HRSOD mIoU}" in grouped
    assert r"\begin{tabular}{l" + "r" * 30 + "}" in grouped and "& -- & 90.2 & -- &" in grouped


def test_write_table_writes_three_files_and_the_csv_reads_back(tmp_path):
    index = pd.MultiIndex.from_tuples([("SAM", 0.0), ("HQ-SAM", 0.2)], names=["model", "noise_scale"])
    summary = pd.DataFrame({"Toy-DIS mIoU": [1.0, 2.0], "Toy-DIS mBIoU": [1.0, 2.0],
                            "average mIoU": [60.123456789, np.nan], "average mBIoU": [50.0, 61.0]}, index=index)
    table = report.compare_box_noise(summary)
    paths = report.write_table(table, tmp_path / "out", "table13")
    assert {key: path.name for key, path in paths.items()} == {
        "csv": "table13.csv", "md": "table13.md", "tex": "table13.tex"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["table13.csv", "table13.md", "table13.tex"]
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), report.flatten(table))
    assert paths["md"].read_text() == report.to_markdown(table)
    assert r"\label{tab:table13}" in paths["tex"].read_text()
