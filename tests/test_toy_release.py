"""The released toy SAM: the shipped file is the one its record names, it was made by the release command's settings
on the toy world the code makes, and the release command itself works (quick mode)."""

import json
from pathlib import Path

import pytest
import torch

from hqsam import provenance
from hqsam.build import build_hqsam
from hqsam.data.layout import TOY_LAYOUT
from hqsam.data.sources import read_layout
from hqsam.profiles import TOY_SAM, get_profile
from hqsam.toy import generate_toy_scenes, loss_log_path, read_toy_scenes
from hqsam.toy.release import (
    QUICK_SETTINGS, RELEASE_SETTINGS, RELEASE_WORLD, ReleaseError, main, prepare_toy, read_record, record_path,
    released_toy_sam,
)


def test_the_shipped_toy_sam_is_the_file_its_record_names():
    assert released_toy_sam() == TOY_SAM
    record = read_record()
    assert provenance.file_sha256(TOY_SAM) == record["sha256"]
    assert record["settings"] == RELEASE_SETTINGS and record["world"] == RELEASE_WORLD
    assert record["command"] == "make toy-sam"
    assert TOY_SAM.stat().st_size <= 20 * 2**20
    assert get_profile("toy").sam_checkpoint == TOY_SAM == get_profile("toy", quick=True).sam_checkpoint
    with pytest.warns(UserWarning, match="plain SAM checkpoint"):  # HQ-SAM's added parts start fresh
        model = build_hqsam("toy", TOY_SAM)
    assert model.checkpoint_path == TOY_SAM


def test_the_shipped_toy_sam_was_trained_on_the_toy_world_this_code_makes(tmp_path):
    prepare_toy(tmp_path, TOY_SAM)  # the toy world at its default sizes, and the released SAM checked
    prepare_toy(tmp_path, Path("a SAM of the user's own.pth"))  # not ours to check
    assert RELEASE_WORLD == {"seed": 0, "num_train": 600, "num_val": 40, "num_scenes": 300}  # the defaults
    scenes = generate_toy_scenes(tmp_path, seed=RELEASE_WORLD["seed"], num_images=RELEASE_WORLD["num_scenes"])
    sources = read_layout(tmp_path, TOY_LAYOUT, split="train") + [read_toy_scenes(scenes)]
    recorded = read_record()["provenance"]["scope"]["data"]
    assert provenance.data_identity(sources) == recorded, (
        "the toy world's training data differ from what the shipped toy SAM was trained on: release it again with "
        "`make toy-sam`")


def test_the_release_command_in_quick_mode_writes_a_checkpoint_its_record_and_losses(tmp_path, capsys):
    output = tmp_path / "release" / "sam_toy.pth"
    torch.set_num_threads(1)
    assert main(["--quick", "--data-root", str(tmp_path / "world"), "--output", str(output)]) == 0
    assert released_toy_sam(output) == output
    record = json.loads(record_path(output).read_text())
    assert record["sha256"] == provenance.file_sha256(output)
    assert record["settings"] == {**RELEASE_SETTINGS, **QUICK_SETTINGS} and record["command"] == "make toy-sam QUICK=1"
    assert record["provenance"]["kind"] == "toy_sam" and record["provenance"]["settings"] == record["settings"]
    assert len(loss_log_path(output).read_text().splitlines()) == 1 + QUICK_SETTINGS["steps"]
    assert sorted(p.name for p in output.parent.iterdir()) == ["sam_toy.json", "sam_toy.losses.csv", "sam_toy.pth"]
    assert f"SHA-256 {record['sha256']}" in capsys.readouterr().out

    corrupted = bytearray(output.read_bytes())
    corrupted[-1] ^= 1
    output.write_bytes(bytes(corrupted))
    with pytest.raises(ReleaseError, match="make toy-sam"):
        released_toy_sam(output)
    record_path(output).unlink()
    with pytest.raises(ReleaseError, match="record .* is missing"):
        released_toy_sam(output)
