"""Notebook plumbing: parameters that stop a notebook at once, where profiles keep their files, make reproduce."""

import ast
import json
from pathlib import Path

import papermill
import pytest
import torch

from hqsam import reproduce
from hqsam.notebook import check_parameters, quick_requested
from hqsam.profiles import get_profile

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="profile must be one of"):
        check_parameters("toyy")
    with pytest.raises(ValueError, match="max_images must be a positive integer or None"):
        check_parameters("toy", max_images=0)
    with pytest.raises(ValueError, match="device must be"):
        check_parameters("toy", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            check_parameters("toy", device="cuda")
    assert check_parameters("paper", "cpu", max_images=None, trials=3) == "cpu"


@pytest.mark.parametrize("notebook", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_papermill_reads_every_parameter(notebook):
    """papermill's parser skips lines it cannot read (e.g. a second '=' in a comment) and then calls the
    parameter unknown; every assignment of the parameters cell must come back from its inspection."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook} needs exactly one cell tagged 'parameters'"
    assigned = {t.id for node in ast.parse("".join(tagged[0]["source"])).body for t in node.targets}
    assert set(papermill.inspect_notebook(str(NOTEBOOKS / notebook))) == assigned


def test_profiles_keep_their_files_apart(monkeypatch):
    toy, quick, paper = get_profile("toy", Path("r")), get_profile("toy", Path("r"), True), get_profile("paper", Path("r"))
    assert toy.hq_checkpoint == Path("r/runs/toy/train/sam_hq_toy.pth") and toy.results == Path("r/results/toy")
    assert quick.data_root == Path("r/.quick/data/toy") and paper.data_root == Path("r/data/hqseg44k")
    assert paper.sam_checkpoint == Path("r/checkpoints/sam_vit_l_0b3195.pth") and toy.checkpoint_names == ()
    vit_b = get_profile("paper", Path("r"), model_type="vit_b")
    assert vit_b.hq_checkpoint == Path("r/checkpoints/sam_hq_vit_b.pth") and vit_b.checkpoint_names == ("sam_vit_b", "sam_hq_vit_b")
    with pytest.raises(ValueError, match="backbone must be one of"):
        get_profile("paper", model_type="vit_x")
    with pytest.raises(ValueError, match="toy backbone only"):
        get_profile("toy", model_type="vit_b")
    monkeypatch.setenv("HQSAM_QUICK", "1")
    assert quick_requested(False)
    monkeypatch.setenv("HQSAM_QUICK", "0")
    assert not quick_requested(False) and quick_requested(True)


def test_an_invalid_papermill_parameter_stops_the_notebook_at_its_first_cell(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="profile must be one of") as failure:
        papermill.execute_notebook(
            str(NOTEBOOKS / "01_data_and_checkpoints.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"profile": "papr", "root": str(tmp_path)}, cwd=str(NOTEBOOKS), kernel_name="python3",
            progress_bar=False,
        )
    assert failure.value.exec_count <= 3  # parameters, injected parameters, the check
    assert not (tmp_path / "data").exists()


def _notebook_with_parameters(path: Path, source: str) -> None:
    cell = {"cell_type": "code", "id": "parameters", "metadata": {"tags": ["parameters"]}, "source": source, "outputs": [],
            "execution_count": None}
    path.write_text(json.dumps({"cells": [cell], "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
                                "nbformat": 4, "nbformat_minor": 5}))


def test_reproduce_skips_finished_stages_and_fills_the_readme(tmp_path, monkeypatch, capsys):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook_with_parameters(notebooks / "01_a.ipynb", 'profile = "toy"\nroot = "."\nmirror = None\n')
    _notebook_with_parameters(notebooks / "02_b.ipynb", 'profile = "toy"\nngpus = 1\nmax_images = None\n')
    (tmp_path / "runs" / "toy" / "notebooks").mkdir(parents=True)
    (tmp_path / "runs" / "toy" / "notebooks" / "01_a.ipynb").write_text("{}")
    ran = []
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    monkeypatch.setattr(reproduce, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(reproduce.papermill, "execute_notebook",
                        lambda src, out, parameters, **kw: ran.append((Path(src).name, parameters)) or Path(out).write_text("{}"))
    reproduce.run("toy", root=tmp_path, extra={"max_images": 2})
    assert ran == [("02_b.ipynb", {"profile": "toy", "ngpus": 1, "max_images": 2})]  # only the parameters it declares
    assert "01_a.ipynb: done before" in capsys.readouterr().out
    reproduce.run("toy", force=True, root=tmp_path, extra={"mirror": "http://127.0.0.1:1"})
    assert [name for name, _ in ran] == ["02_b.ipynb", "01_a.ipynb", "02_b.ipynb"]
    assert ran[1][1] == {"profile": "toy", "root": str(tmp_path.resolve()), "mirror": "http://127.0.0.1:1"}
    with pytest.raises(ValueError, match="no notebook has the parameter"):
        reproduce.run("toy", root=tmp_path, extra={"max_imgs": 2})
    assert reproduce.parse_parameters(["a=2", "b=[x=1,y]", "c=null"]) == {"a": 2, "b": ["x=1", "y"], "c": None}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        reproduce.parse_parameters(["2a"])

    tables = tmp_path / "results" / "toy" / "tables"
    tables.mkdir(parents=True)
    for stem in reproduce.README_TABLES:
        (tables / f"{stem}.md").write_text(f"| {stem} |\n")
    (tmp_path / "README.md").write_text(f"intro\n{reproduce.START}\nold\n{reproduce.END}\nrest\n")
    assert reproduce.update_readme("toy")
    text = (tmp_path / "README.md").read_text()
    assert "old" not in text and "| table2_hq_gain |" in text and text.startswith("intro") and text.endswith("rest\n")
