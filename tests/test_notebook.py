"""Notebook plumbing: the setup that stops a notebook at once on a bad parameter, the stages' library calls, where
profiles keep their files (make reproduce: test_reproduce.py)."""

import ast
import dataclasses
import itertools
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import papermill
import pytest
import torch

from hqsam import build_hqsam
from hqsam.eval import evaluate_hq_datasets
from hqsam.metrics import boundary_iou, mask_iou
from hqsam.data.sources import Sample
from hqsam.notebook import (QUICK_TRAINING, coco_inputs, evaluation_settings, gt_box_masks, setup, train_hqsam,
                            training_overrides)
from hqsam.profiles import PAPER_BACKBONES, PROFILES, TOY_SAM, get_profile

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="profile must be one of"):
        setup("toyy")
    with pytest.raises(ValueError, match="device must be"):
        setup("toy", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            setup("toy", device="cuda")
    with pytest.raises(ValueError, match="backbone must be one of"):
        setup("paper", model_type="vit_x")
    paper = get_profile("paper")
    with pytest.raises(ValueError, match="max_images must be a positive integer or None"):
        evaluation_settings(paper, max_images=0)
    with pytest.raises(ValueError, match="trials must be a positive integer or None"):
        evaluation_settings(paper, trials=True)
    assert evaluation_settings(paper, max_images=None, trials=3, precision="bf16") == (None, 3, 5, "bf16")
    assert evaluation_settings(paper, True, max_images=0).max_images == 3  # quick mode's sizes replace the given ones
    assert evaluation_settings(paper).precision == "fp32"  # the training recipe's


def test_setup_resolves_quick_mode_the_profile_and_the_device(monkeypatch):
    monkeypatch.setenv("HQSAM_QUICK", "1")
    assert setup("toy", "cpu", "r") == (True, "cpu", get_profile("toy", Path("r"), quick=True))
    monkeypatch.setenv("HQSAM_QUICK", "0")
    quick, device, paths = setup("paper", "auto", "r", model_type="vit_b")
    assert not quick and device in ("cpu", "cuda") and paths == get_profile("paper", Path("r"), model_type="vit_b")
    assert setup("toy", "cpu", "r", quick=True).quick


def test_training_and_coco_inputs_follow_the_profile(monkeypatch, capsys):
    paper = get_profile("paper", Path("r"), model_type="vit_b")
    overrides = training_overrides(paper, "cuda", quick=True, epochs=3, overrides=["lr=1e-4", "epochs=1"])
    assert overrides[:6] == ["model_type=vit_b", "data_root=r/data/hqseg44k", "sam_checkpoint=r/checkpoints/sam_vit_b_01ec64.pth",
                             "output_dir=r/runs/paper/train", "device=cuda", "progress=false"]
    assert overrides[6:] == ["epochs=3", *QUICK_TRAINING, "lr=1e-4", "epochs=1"]  # later ones win

    launched = []

    class FakeTorchrun:
        def __init__(self, command, **options):
            launched.append(command)
            self.stdout, self.returncode = iter(["rank 0: epoch 1\n"]), 3

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(subprocess, "Popen", FakeTorchrun)
    with pytest.raises(RuntimeError, match="torchrun exited with 3"):
        train_hqsam(paper, "cuda", ngpus=2)
    assert capsys.readouterr().out == "rank 0: epoch 1\n"  # streamed
    assert launched[0][1:8] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hqsam", "train"]
    assert launched[0][8:12] == ["--config", "paper", "--resume", "--force"]  # the notebook owns the profile's run
    assert launched[0][12:] == training_overrides(paper, "cuda")
    fitted = []
    monkeypatch.setattr("hqsam.notebook.fit", lambda config, resume, force: fitted.append((config, resume, force)) or
                        SimpleNamespace(steps=7, seconds=2.0, checkpoint="sam_hq_toy.pth"))
    train_hqsam(get_profile("toy", Path("r")), "cpu", ngpus=2)  # the toy trains in this process, whatever ngpus
    assert len(launched) == 1 and fitted[0][1:] == (True, True) and str(fitted[0][0].output_dir) == "r/runs/toy/train"
    assert capsys.readouterr().out == "7 steps in 2 s; checkpoint sam_hq_toy.pth\n"

    toy = get_profile("toy", Path("r"))
    assert coco_inputs(toy) == (toy.coco_images, toy.coco_annotations, toy.coco_detections)
    assert coco_inputs(toy, "dets.json") == (toy.coco_images, toy.coco_annotations, Path("dets.json"))
    assert coco_inputs(toy, "dets.json", oracle=True) == (toy.coco_images, toy.coco_annotations, None)


class ListSource(list):
    """Samples with a name, as `evaluate_hq_datasets` reads a source."""

    name = "Toy-DIS"


def test_gt_box_masks_are_the_masks_the_hq_benchmark_scores():
    torch.manual_seed(0)
    model = build_hqsam("toy")
    masks = [np.zeros((40, 50), bool), np.zeros((36, 30), bool)]
    masks[0][5:20, 8:31] = True
    masks[1][10:30, 3:4] = True
    rng = np.random.default_rng(0)
    samples = [Sample((rng.random(m.shape + (3,)) * 255).astype(np.uint8), m, f"Toy-DIS/s{i}")
               for i, m in enumerate(masks)]
    predicted, boxes = gt_box_masks(model, samples)
    rows = evaluate_hq_datasets(model, [ListSource(samples)], progress=False).set_index(["image", "model"])
    for sample, given in zip(samples, predicted):
        for name in ("SAM", "HQ-SAM"):
            assert given[name].shape == sample.mask.shape
            assert rows.loc[(sample.name, name), "iou"] == mask_iou(sample.mask, given[name])
            assert rows.loc[(sample.name, name), "biou"] == boundary_iou(sample.mask, given[name])
    # The protocol's box, on its 128 x 128 resize, in the image's pixels: about the GT's tight box.
    np.testing.assert_allclose(boxes[0], [8, 5, 30, 19], atol=1.5)
    np.testing.assert_allclose(boxes[1], [3, 10, 3, 29], atol=1.5)


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_papermill_reads_every_parameter(notebook):
    """papermill's parser skips lines it cannot read (e.g. a second '=' in a comment) and then calls the
    parameter unknown; every assignment of the parameters cell must come back from its inspection."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook} needs exactly one cell tagged 'parameters'"
    assigned = {t.id for node in ast.parse("".join(tagged[0]["source"])).body for t in node.targets}
    assert set(papermill.inspect_notebook(str(NOTEBOOKS / notebook))) == assigned


def _path_fields(profile) -> dict:
    """The profile's paths, but the toy SAM: shipped with the package, read only, the same for every toy run."""
    return {f.name: getattr(profile, f.name) for f in dataclasses.fields(profile)
            if isinstance(getattr(profile, f.name), Path) and getattr(profile, f.name) != TOY_SAM}


def _shared_paths(one, other) -> list:
    """(field of one, field of other) for every path of `one` that is a path of `other`, or lies inside it, or
    holds it."""
    return [(a, b) for (a, path_a), (b, path_b) in itertools.product(_path_fields(one).items(), _path_fields(other).items())
            if path_a == path_b or path_a in path_b.parents or path_b in path_a.parents]


def test_profiles_keep_their_files_apart():
    """No path of a profile is, holds or lies in a path of another profile, or of its own quick (or full) runs:
    no run reads another's inputs or overwrites its outputs. Every path is under the root, but the toy SAM, which
    the package ships (read only)."""
    root = Path("r")
    runs = {(name, quick, model_type): get_profile(name, root, quick, model_type)
            for name, model_types in (("toy", [None]), ("paper", PAPER_BACKBONES)) for model_type in model_types
            for quick in (False, True)}
    assert {profile.name for profile in runs.values()} == set(PROFILES)
    for profile in runs.values():
        fields = _path_fields(profile)
        assert profile.name == "toy" or "sam_checkpoint" in fields
        assert (profile.sam_checkpoint == TOY_SAM) == (profile.name == "toy")
        assert {"data_root", "checkpoints", "downloads", "hq_checkpoint", "train_dir", "results",
                "figures", "notebooks", "coco_root", "coco_images", "coco_annotations", "coco_detections"} <= set(fields)
        assert all(root in path.parents for path in fields.values())
    for (one, other) in itertools.combinations(runs, 2):
        if one[:2] != other[:2]:  # the paper profile's backbones differ in their checkpoints only
            assert _shared_paths(runs[one], runs[other]) == [], f"{one[:2]} and {other[:2]} share paths"
    # The check finds a shared path and a nested one.
    toy, paper = runs[("toy", False, None)], runs[("paper", False, "vit_l")]
    assert _shared_paths(dataclasses.replace(toy, results=paper.results), paper) == [("results", "results")]
    assert _shared_paths(dataclasses.replace(toy, train_dir=paper.figures / "toy"), paper) == [("train_dir", "figures")]

    assert toy.hq_checkpoint == Path("r/runs/toy/train/sam_hq_toy.pth") and toy.results == Path("r/results/toy")
    assert runs[("toy", True, None)].data_root == Path("r/.quick/data/toy") and paper.data_root == Path("r/data/hqseg44k")
    assert paper.sam_checkpoint.name == "sam_vit_l_0b3195.pth" and toy.checkpoint_names == ()
    vit_b = runs[("paper", False, "vit_b")]
    assert vit_b.hq_checkpoint.name == "sam_hq_vit_b.pth" and vit_b.checkpoint_names == ("sam_vit_b", "sam_hq_vit_b")
    with pytest.raises(ValueError, match="toy backbone only"):
        get_profile("toy", model_type="vit_b")


def test_an_invalid_papermill_parameter_stops_the_notebook_at_its_first_cell(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="profile must be one of") as failure:
        papermill.execute_notebook(
            str(NOTEBOOKS / "01_data_and_checkpoints.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"profile": "papr", "root": str(tmp_path)}, cwd=str(NOTEBOOKS), kernel_name="python3",
            progress_bar=False,
        )
    assert failure.value.exec_count <= 3  # parameters, injected parameters, the check
    assert not (tmp_path / "data").exists()

