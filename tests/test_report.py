"""hqsam.report: the packaged paper tables, the comparison builders and their Markdown, LaTeX and CSV forms."""

import csv
import math
import time
from hashlib import sha256
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hqsam
from hqsam import report
from hqsam.data.layout import LAYOUTS
from hqsam.eval import hq_benchmark
from hqsam.seeding import keyed_rng

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
    tiny = report.compare_backbones([{"model": "SAM", "backbone": "vit_tiny", "params_learnable_mb": 38.6},
                                     {"model": "HQ-SAM", "backbone": "vit_tiny", "params_learnable_mb": 1.71}])
    assert tiny.loc[("SAM", "vit_tiny"), ("learnable MB", "paper")] == 38.6  # the paper's MobileSAM row
    assert tiny.loc[("HQ-SAM", "vit_tiny"), ("FPS", "paper")] == 41.2  # Light HQ-SAM

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


def random_rows(datasets=(("Toy-DIS", 7), ("Toy-COIFT", 5)), by=None, trials=1, seed=0) -> pd.DataFrame:
    # Per-image rows of both models (HQ-SAM a little better on average), in a shuffled order.
    rng = np.random.default_rng(seed)
    settings = [{}] if by is None else [{by[0]: value} for value in by[1]]
    rows = [
        {"dataset": dataset, "image": f"{dataset}/{i:02d}", "model": model, **setting, "trial": trial,
         "iou": rng.random() * 0.8 + 0.1 * (model == "HQ-SAM"), "biou": rng.random() * 0.7 + 0.05 * (model == "HQ-SAM")}
        for dataset, count in datasets for i in range(count) for setting in settings for trial in range(trials)
        for model in ("SAM", "HQ-SAM")
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def plain_percentile(values, q):
    # numpy's default ("linear") percentile, by hand.
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])


def test_paired_bootstrap_matches_a_plain_python_loop():
    rows = random_rows(by=("noise_scale", (0.0, 0.4)), trials=2)
    resamples, seed = 300, 3
    table = report.paired_bootstrap(rows, "noise_scale", resamples=resamples, seed=seed)
    assert list(table.index.names) == ["noise_scale", "dataset", "metric"]
    assert list(dict.fromkeys(table.index.get_level_values("dataset"))) == ["Toy-DIS", "Toy-COIFT", "average"]
    assert table.attrs == {"level": 0.95, "resamples": resamples, "seed": seed, "models": ("SAM", "HQ-SAM")}
    for scale in (0.0, 0.4):
        per_dataset = {}  # dataset -> metric -> quantity -> (estimate, replicates)
        for dataset in ("Toy-DIS", "Toy-COIFT"):
            here = rows[(rows["noise_scale"] == scale) & (rows["dataset"] == dataset)]
            names = sorted(set(here["image"]))
            value = {(image, model, metric): 100 * here.loc[(here["image"] == image) & (here["model"] == model),
                                                            metric].mean()
                     for image in names for model in ("SAM", "HQ-SAM") for metric in ("iou", "biou")}
            rng = keyed_rng(seed, "bootstrap", dataset)
            draws = [rng.integers(0, len(names), size=len(names)) for _ in range(resamples)]
            per_dataset[dataset] = {}
            for metric, label in (("iou", "mIoU"), ("biou", "mBIoU")):
                def mean(picked, model, metric=metric):
                    return sum(value[(names[i], model, metric)] for i in picked) / len(picked)
                everyone = range(len(names))
                sam = (mean(everyone, "SAM"), [mean(d, "SAM") for d in draws])
                hq = (mean(everyone, "HQ-SAM"), [mean(d, "HQ-SAM") for d in draws])
                gain = (hq[0] - sam[0], [h - s for h, s in zip(hq[1], sam[1])])
                per_dataset[dataset][label] = {"SAM": sam, "HQ-SAM": hq, "gain": gain}
        per_dataset["average"] = {
            label: {quantity: (sum(per_dataset[d][label][quantity][0] for d in ("Toy-DIS", "Toy-COIFT")) / 2,
                               [(a + b) / 2 for a, b in zip(per_dataset["Toy-DIS"][label][quantity][1],
                                                           per_dataset["Toy-COIFT"][label][quantity][1])])
                    for quantity in ("SAM", "HQ-SAM", "gain")}
            for label in ("mIoU", "mBIoU")
        }
        for dataset, metrics in per_dataset.items():
            for label, quantities in metrics.items():
                row = table.loc[(scale, dataset, label)]
                for quantity, (estimate, replicates) in quantities.items():
                    assert row[quantity] == pytest.approx(estimate, abs=1e-9)
                    assert row[f"{quantity} low"] == pytest.approx(plain_percentile(replicates, 0.025), abs=1e-9)
                    assert row[f"{quantity} high"] == pytest.approx(plain_percentile(replicates, 0.975), abs=1e-9)
    summary = hq_benchmark.summarize(rows, "noise_scale")
    expected = summary.loc[("HQ-SAM", 0.4), "average mBIoU"]
    assert table.loc[(0.4, "average", "mBIoU"), "HQ-SAM"] == pytest.approx(expected)
    # The same rows, in any order, give the same numbers; another seed other draws.
    pd.testing.assert_frame_equal(report.paired_bootstrap(rows.iloc[::-1], "noise_scale", resamples=resamples,
                                                          seed=seed), table)
    other = report.paired_bootstrap(rows, "noise_scale", resamples=resamples, seed=seed + 1)
    assert not np.allclose(other["gain low"], table["gain low"])


def test_paired_bootstrap_known_cases_wins_and_trials():
    rows = random_rows(datasets=(("Toy-DIS", 6), ("Toy-Thin", 4)))
    sam = rows[rows["model"] == "SAM"]
    same = pd.concat([sam, sam.assign(model="HQ-SAM")])
    table = report.paired_bootstrap(same, resamples=500)
    assert (table["gain"] == 0).all() and (table["gain low"] == 0).all() and (table["gain high"] == 0).all()
    assert (table["wins"] == 0).all() and (table["losses"] == 0).all()
    assert table.xs("average", level="dataset")["ties"].tolist() == [10, 10]
    assert table.loc[("Toy-Thin", "mIoU"), "images"] == 4
    shifted = report.paired_bootstrap(pd.concat([sam, sam.assign(model="HQ-SAM", iou=sam["iou"] + 0.1)]), resamples=500)
    for dataset in ("Toy-DIS", "Toy-Thin", "average"):
        row = shifted.loc[(dataset, "mIoU")]
        assert row["gain"] == pytest.approx(10.0) and row["gain low"] == pytest.approx(10.0)
        assert row["gain high"] == pytest.approx(10.0) and row["SAM high"] > row["SAM low"]
    assert shifted.loc[("average", "mIoU"), "wins"] == 10 and shifted.loc[("average", "mBIoU"), "ties"] == 10

    # Trials: an image's value is the mean of its trials, so a win needs the better mean.
    trials = pd.DataFrame(
        [("D", "won", "SAM", 0, 0.5), ("D", "won", "SAM", 1, 0.5), ("D", "won", "HQ-SAM", 0, 0.2),
         ("D", "won", "HQ-SAM", 1, 0.9), ("D", "tied", "SAM", 0, 0.25), ("D", "tied", "SAM", 1, 0.75),
         ("D", "tied", "HQ-SAM", 0, 0.5), ("D", "tied", "HQ-SAM", 1, 0.5), ("D", "lost", "SAM", 0, 0.6),
         ("D", "lost", "SAM", 1, 0.6), ("D", "lost", "HQ-SAM", 0, 0.9), ("D", "lost", "HQ-SAM", 1, 0.1)],
        columns=["dataset", "image", "model", "trial", "iou"]).assign(biou=0.5)
    counts = report.paired_bootstrap(trials, resamples=50).loc[("D", "mIoU")]
    assert (counts["wins"], counts["ties"], counts["losses"], counts["images"]) == (1, 1, 1, 3)
    assert counts["SAM"] == pytest.approx(100 * 1.6 / 3) and counts["HQ-SAM"] == pytest.approx(100 * 1.55 / 3)
    assert report.gain_columns(report.paired_bootstrap(trials, resamples=50)).loc[("D", "mIoU"), "wins"] == "1/3"


def test_paired_bootstrap_names_images_without_both_models():
    rows = random_rows()
    alone = rows.drop(rows.index[(rows["image"] == "Toy-DIS/03") & (rows["model"] == "HQ-SAM")])
    with pytest.raises(ValueError, match=r"Toy-DIS/03.*no HQ-SAM rows"):
        report.paired_bootstrap(alone)
    with pytest.raises(ValueError, match="no SAM rows"):
        report.paired_bootstrap(rows[rows["model"] == "HQ-SAM"])
    noise = random_rows(by=("noise_scale", (0.0, 0.2)))
    with pytest.raises(ValueError, match=r"noise_scale.*0\.2.*Toy-COIFT"):
        report.paired_bootstrap(noise[(noise["noise_scale"] == 0.0) | (noise["dataset"] == "Toy-DIS")], "noise_scale")
    with pytest.raises(ValueError, match="lack the columns"):
        report.paired_bootstrap(rows.drop(columns="image"))


def test_paired_bootstrap_is_fast():
    rows = random_rows(datasets=[(f"Toy-{name}", 40) for name in ("DIS", "COIFT", "HRSOD", "Thin")])
    started = time.perf_counter()
    report.paired_bootstrap(rows, resamples=2000)
    assert time.perf_counter() - started < 1.0


def test_gain_tables_carry_intervals_and_wins_when_given():
    datasets = (("Toy-DIS", 7), ("Toy-COIFT", 5), ("Toy-HRSOD", 4), ("Toy-Thin", 6))
    rows = random_rows(datasets)
    intervals = report.paired_bootstrap(rows, resamples=400)
    plain = report.model_gains(report.compare_hq_datasets(hq_benchmark.summarize(rows)))
    gains = report.model_gains(report.compare_hq_datasets(hq_benchmark.summarize(rows)), intervals=intervals)
    assert list(gains.columns) == [("SAM", "ours"), ("HQ-SAM", "ours"), ("gain", "ours"), ("gain 95% CI", "ours"),
                                   ("wins", "ours"), ("SAM", "paper"), ("HQ-SAM", "paper"), ("gain", "paper")]
    pd.testing.assert_frame_equal(gains[list(plain.columns)], plain, check_like=True)
    coift = intervals.loc[("Toy-COIFT", "mBIoU")]
    row = gains.loc["COIFT mBIoU"]
    assert row[("gain", "ours")] == pytest.approx(coift["gain"])
    assert row[("gain 95% CI", "ours")] == f"[{coift['gain low']:.1f}, {coift['gain high']:.1f}]"
    assert row[("wins", "ours")] == f"{int(coift['wins'])}/5"
    assert gains.loc["average mIoU", ("wins", "ours")].endswith("/22")
    assert "95% paired bootstrap over images (400 resamples" in gains.attrs["caption"]
    markdown = report.to_markdown(gains)
    assert "| quantity | SAM (ours) | HQ-SAM (ours) | gain (ours) | gain 95% CI (ours) | wins (ours) |" in markdown
    assert f"| {row[('gain 95% CI', 'ours')]} | {row[('wins', 'ours')]} |" in markdown
    with pytest.raises(ValueError, match="paired_bootstrap"):
        report.model_gains(report.compare_hq_datasets(hq_benchmark.summarize(rows)),
                           intervals=intervals.xs("average", level="dataset"))
    with pytest.raises(ValueError, match="compare"):
        report.model_gains(report.compare_hq_datasets(hq_benchmark.summarize(rows)), baseline="HQ-SAM", model="SAM",
                           intervals=intervals)


def test_table13_and_figure5_carry_intervals_and_wins_per_setting():
    noise = random_rows(by=("noise_scale", (0.0, 0.1 + 0.1)))
    intervals = report.paired_bootstrap(noise, "noise_scale", resamples=300)
    summary = hq_benchmark.summarize(noise, "noise_scale")
    plain, table = report.compare_box_noise(summary), report.compare_box_noise(summary, intervals)
    assert list(table.columns) == [(q, kind) for q in ("hq4 mIoU", "hq4 mBIoU")
                                   for kind in ("ours", "paper", "diff", "gain", "gain 95% CI", "wins")]
    pd.testing.assert_frame_equal(table[list(plain.columns)], plain)
    assert table.loc[("SAM", 0.2), [("hq4 mIoU", "gain"), ("hq4 mIoU", "wins")]].isna().all()
    average = intervals.loc[(0.1 + 0.1, "average", "mBIoU")]
    assert table.loc[("HQ-SAM", 0.2), ("hq4 mBIoU", "gain")] == pytest.approx(average["gain"])
    assert table.loc[("HQ-SAM", 0.2), ("hq4 mBIoU", "wins")] == f"{int(average['wins'])}/12"
    assert table.loc[("HQ-SAM", 0.2), ("hq4 mBIoU", "gain 95% CI")] == (
        f"[{average['gain low']:.1f}, {average['gain high']:.1f}]")
    assert "paired bootstrap" in table.attrs["caption"] and "| HQ-SAM | 0.2 |" in report.to_markdown(table)
    with pytest.raises(ValueError, match="noise_scale"):
        report.compare_box_noise(summary, report.paired_bootstrap(noise, resamples=10))

    points = random_rows((("Toy-COIFT", 5), ("Toy-Thin", 3)), by=("pos_points", (1, 3)), trials=2)
    points["neg_points"] = 0
    intervals = report.paired_bootstrap(points, ["pos_points", "neg_points"], resamples=300)
    figure5 = report.compare_points(hq_benchmark.summarize(points, ["pos_points", "neg_points"]), intervals)
    assert set(figure5.index.get_level_values("dataset")) == {"COIFT"}
    cell = intervals.loc[(3, 0, "Toy-COIFT", "mBIoU")]
    assert figure5.loc[("COIFT", "HQ-SAM", 3, 0), ("mBIoU", "wins")] == f"{int(cell['wins'])}/5"
    assert figure5.loc[("COIFT", "HQ-SAM", 3, 0), ("mBIoU", "gain")] == pytest.approx(cell["gain"])
    assert math.isnan(figure5.loc[("COIFT", "SAM", 1, 0), ("mBIoU", "gain")])
