"""The README's "Your own data" path end to end: its YAML trains on a folder of images, validates on the held-out
images only, and `hqsam eval hq --config` scores exactly those; the errors say which key to set."""

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import hqsam
from hqsam import provenance
from hqsam.cli import main
from hqsam.data.sources import held_out_stems
from hqsam.train import fit, load_config
from hqsam.train.loop import Process, build_sources, epoch_loader

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = ["batch_size=4", "epochs=1", "loss_points=64", "progress=false", "device=cpu"]


def readme_config() -> dict:
    """The first yaml block of the README's "### Your own data" section."""
    section = README.read_text().split("### Your own data", 1)[1].split("\n## ", 1)[0]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


@pytest.fixture()
def own_data(tmp_path, monkeypatch) -> Path:
    """12 images and 0/255 masks where the README's folder entry looks (the run's folder is the cwd), a plain toy
    SAM, and mine.yaml: the README's YAML with that SAM."""
    monkeypatch.chdir(tmp_path)
    entry = readme_config()["extra_sources"][0]
    rng = np.random.default_rng(0)
    for folder in (entry["image_dir"], entry["mask_dir"]):
        Path(folder).mkdir(parents=True)
    for i in range(12):
        mask = np.zeros((64, 64), np.uint8)
        mask[8 + i : 40 + i, 10 : 30 + i] = 255
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(f"{entry['image_dir']}/im{i:02d}.jpg")
        Image.fromarray(mask).save(f"{entry['mask_dir']}/im{i:02d}.png")
    sam = hqsam.save_state_dict(hqsam.build_sam("toy").state_dict(), tmp_path / "sam_toy.pth")
    Path("mine.yaml").write_text(yaml.safe_dump({**readme_config(), "sam_checkpoint": str(sam)}))
    return tmp_path


def test_readme_yaml_trains_validates_and_evaluates_on_the_held_out_images(own_data, one_thread, capsys):
    config = load_config("mine.yaml", TINY)
    assert (config.model_type, config.output_dir) == ("toy", "runs/mine/train")  # from the weights; the source's name
    held = held_out_stems([f"im{i:02d}" for i in range(12)], readme_config()["extra_sources"][0]["holdout"])
    assert held and held == held_out_stems([f"im{i:02d}" for i in reversed(range(12))], 0.1)

    result = fit(config)
    printed = capsys.readouterr().out
    assert f"train/mine: 12 images and 12 masks found, 12 paired, {12 - len(held)} usable" in printed
    assert f"held out for validation (holdout 0.1): {len(held)} ({', '.join(held)})" in printed
    assert f"val/mine-val: 12 images and 12 masks found, 12 paired, {len(held)} usable" in printed
    trained = {stem for source in build_sources(config, "train") for stem in source.stems}
    assert trained == {f"im{i:02d}" for i in range(12)} - set(held)
    validated = pd.read_csv(result.output_dir / "val_epoch1.csv")
    assert set(validated["dataset"]) == {"mine-val"}  # not the profile's toy sets
    assert set(validated["image"]) == {f"mine-val/{stem}" for stem in held}

    assert main(["eval", "hq", "--config", "mine.yaml", "--no-progress"]) == 0  # as the README says: the run's export
    rows = pd.read_csv(result.output_dir / "eval/hq_rows.csv")
    assert provenance.read_provenance(result.output_dir / "eval/hq_rows.csv")["scope"]["model"]["sha256"] == (
        provenance.file_sha256(result.checkpoint))
    assert set(rows["image"]) == {f"mine-val/{stem}" for stem in held} and set(rows["model"]) == {"SAM", "HQ-SAM"}


def test_own_data_without_sam_checkpoint_names_the_key(own_data, capsys):
    values = readme_config()
    del values["sam_checkpoint"]
    Path("bare.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match=r"^sam_checkpoint is not set: .*e\.g\. sam_checkpoint: ") as error:
        load_config("bare.yaml")
    assert "\n" not in str(error.value)
    assert main(["train", "--config", "bare.yaml"]) != 0
    assert "sam_checkpoint is not set" in capsys.readouterr().err


def test_fewer_samples_than_a_batch_names_batch_size(own_data):
    config = load_config("mine.yaml", ["batch_size=16"])
    run = SimpleNamespace(config=config, process=Process(), examples=range(10), per_process=16, micro=16,
                          accumulation=1)
    with pytest.raises(ValueError, match=r"10 training samples are fewer than one global batch of 16: set "
                                         r"batch_size \(e\.g\. batch_size=8\) and batch_per_gpu"):
        epoch_loader(run, SimpleNamespace(epoch=0, step_in_epoch=0))
