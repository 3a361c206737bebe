"""The paper profile, rehearsed offline: the rehearsal mirror in the released formats, `make reproduce
PROFILE=paper` run against it on the CPU (download, extraction, validation report, torchrun training of vit_b
with accumulation and sharded validation, every evaluation, tables and figures, all five notebooks), and a short
training of Light HQ-SAM (vit_tiny) on MobileSAM."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from hqsam import build_hqsam
from hqsam.cli import main
from hqsam.data.hqseg44k import download_hqseg44k
from hqsam.data.layout import HQSEG44K_LAYOUT
from hqsam.download import REGISTRY, DownloadError, download, read_sha256sums, sha256_file
from hqsam.profiles import get_profile
from hqsam.rehearsal import DETECTIONS_FILE, serve, write_rehearsal

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    return write_rehearsal(tmp_path_factory.mktemp("rehearsal") / "mirror", images_per_source=1, coco_images=1)


def test_the_mirror_lists_every_file_and_is_trusted_for_them(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    sums = read_sha256sums((mirror / "SHA256SUMS").read_text())
    assert {name: sha256_file(mirror / name) for name in sums} == sums
    wanted = {REGISTRY[name].filename for name in ("sam_vit_b", "sam_hq_vit_b", "mobile_sam", "sam_hq_vit_tiny",
                                                   "DIS5K", "cascade_psp", "thin_object_detection", "coco_val2017",
                                                   "coco_annotations_trainval2017")}
    assert wanted | {DETECTIONS_FILE} <= set(sums)
    assert write_rehearsal(mirror, images_per_source=1, coco_images=1) == mirror  # the same arguments: kept as is
    pinned = ("sam_vit_b", "mobile_sam")
    with serve(mirror) as url:
        for name in pinned:
            path = download(name, tmp_path / "listed", base_url=url, progress=False)
            assert sha256_file(path) == sums[path.name]  # random weights, trusted because the mirror lists them
        (mirror / "SHA256SUMS").rename(mirror / "SHA256SUMS.off")
        try:
            for name in pinned:  # unlisted: the real pins refuse them
                with pytest.raises(DownloadError, match="pinned in hqsam.s registry"):
                    download(name, tmp_path / "unlisted", base_url=url, progress=False)
        finally:
            (mirror / "SHA256SUMS.off").rename(mirror / "SHA256SUMS")


def test_paper_profile_trains_light_hq_sam_on_mobile_sam(mirror, tmp_path, monkeypatch, one_thread):
    """`hqsam train --config paper model_type=vit_tiny` in the paper profile's folders: MobileSAM's checkpoint and
    HQSeg-44K from the mirror, one step on one image, validation on one; the export is Light HQ-SAM in the release's
    format, on MobileSAM's weights unchanged."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.chdir(tmp_path)
    profile = get_profile("paper", model_type="vit_tiny")
    assert profile.checkpoint_names == ("mobile_sam", "sam_hq_vit_tiny")
    with serve(mirror) as url:
        assert main(["download", "mobile_sam", "--dir", str(profile.checkpoints), "--mirror", url,
                     "--no-progress"]) == 0
        download_hqseg44k(profile.data_root, ("cascade_psp", "thin_object_detection"), base_url=url, progress=False,
                          downloads_dir=profile.downloads)
    overrides = ["model_type=vit_tiny", "epochs=1", "batch_size=1", "batch_per_gpu=1", "train_sources=[FSS-1000]",
                 "val_sources=[COIFT]", "max_val_images=1", "loss_points=4096", "num_workers=0", "device=cpu",
                 "progress=false"]
    assert main(["train", "--config", "paper", *overrides]) == 0
    assert len(pd.read_csv(profile.train_dir / "steps.csv")) == 1
    validation = pd.read_csv(profile.train_dir / "val_epoch1.csv")
    assert sorted(validation["model"]) == ["HQ-SAM", "SAM"] and set(validation["dataset"]) == {"COIFT"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete Light HQ-SAM checkpoint
        trained = build_hqsam("auto", profile.train_dir / "sam_hq_vit_tiny.pth").state_dict()
    mobile_sam = torch.load(profile.sam_checkpoint, map_location="cpu", weights_only=True)
    assert all(torch.equal(trained[key], value) for key, value in mobile_sam.items())  # SAM stayed frozen


def test_make_reproduce_runs_the_paper_profile_against_the_mirror(mirror, tmp_path):
    out = tmp_path / "run"
    train = "[epochs=1,batch_size=4,batch_per_gpu=1,max_val_images=1,loss_points=4096,num_workers=0]"
    parameters = [f"coco_detections={mirror / DETECTIONS_FILE}", "max_images=1", "trials=1", "speed_repeats=1",
                  "speed_warmup=0", "grid_datasets=2", "everything=quick", f"train_overrides={train}"]
    environment = {**os.environ, "no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    environment.pop("HQSAM_QUICK", None)
    with serve(mirror) as url:
        run = subprocess.run(
            ["make", "-s", "-C", str(REPO), "reproduce", "PROFILE=paper", "MODEL_TYPE=vit_b", "NGPUS=2",
             "DEVICE=cpu", f"MIRROR={url}", f"OUT={out}", f"PY={sys.executable}",
             "ARGS=" + " ".join(f"-p {p}" for p in parameters)],
            capture_output=True, text=True, env=environment, timeout=2400,
        )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    profile = get_profile("paper", out, model_type="vit_b")
    assert sorted(p.name for p in profile.notebooks.glob("*.ipynb")) == [
        "01_data_and_checkpoints.ipynb", "02_training.ipynb", "03_tour.ipynb", "04_evaluation.ipynb",
        "05_tables_and_figures.ipynb"]

    sums = read_sha256sums((mirror / "SHA256SUMS").read_text())
    for path in (profile.sam_checkpoint, profile.hq_checkpoint):
        assert sha256_file(path) == sums[path.name]
    report = pd.read_csv(profile.results / "data_report.csv")
    assert sorted(report["name"]) == sorted(spec.name for spec in HQSEG44K_LAYOUT)
    assert (report["usable"] == 1).all() and (report["skipped"] == 0).all()  # all 11 sources, in the release's tree
    assert (profile.coco_images.is_dir() and profile.coco_annotations.is_file())

    training = (profile.notebooks / "02_training.ipynb").read_text()
    assert "2 processes" in training and "2 micro-steps" in training, "torchrun with accumulation"
    steps = pd.read_csv(profile.train_dir / "steps.csv")
    assert len(steps) == 1  # 7 training images, global batch 4: one step (the incomplete batch dropped)
    validation = pd.read_csv(profile.train_dir / "val_epoch1.csv")
    assert sorted(validation["dataset"].unique()) == ["COIFT", "DIS5K-VD", "HRSOD", "ThinObject5K-TE"]
    assert len(validation) == 8 and not validation.duplicated(["dataset", "image", "model"]).any()
    exported = torch.load(profile.train_dir / "sam_hq_vit_b.pth", map_location="cpu", weights_only=True)
    assert "mask_decoder.hf_token.weight" in exported

    results = profile.results
    for name in ("hq_summary.csv", "box_noise_summary.csv", "points_summary.csv", "coco/metrics.csv"):
        assert len(pd.read_csv(results / name)) >= 2, name
    assert json.loads((results / "speed.json").read_text())["model_type"] == "vit_b"
    assert {"table2_hq_datasets.md", "table10_backbones.md", "table13_box_noise.md"} <= {
        p.name for p in (results / "tables").iterdir()}
    assert {"qualitative_grid.png", "box_noise_curve.png", "points_curve.png", "training_curves.png"} <= {
        p.name for p in profile.figures.iterdir()}
