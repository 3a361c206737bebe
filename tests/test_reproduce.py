"""`make reproduce` as a build: stages rerun when their notebook, the hqsam code they import, their parameters or
an earlier stage changed, and say why; the terminal shows the cells and the latest progress; executed notebooks
keep one line per progress bar and no absolute paths; README.md changes only when asked, from the build's tables.

The tiny project in tmp_path has three notebooks and a stand-in `hqsam` package beside them in notebooks/: the
kernel runs there, so its imports find the stand-in, and `run(package=...)` digests it."""

import json
from pathlib import Path
from types import SimpleNamespace

import nbformat
import papermill
import pytest

from hqsam import reproduce

REPOSITORY_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TABLES = "05_tables_and_figures.ipynb"
NOTEBOOKS = {
    "01_data.ipynb": ('profile = "toy"\nroot = ".."\nquick = False\nn = 1',
                      'from hqsam.seeding import keyed_seed\nimport os, sys\n\nfor step in range(500):\n'
                      '    print(f"\\rtoy SAM: {step + 1}/500", end="", file=sys.stderr, flush=True)\n'
                      'print(file=sys.stderr)\nprint("data in", os.path.abspath(root), keyed_seed(n))'),
    "02_train.ipynb": ('profile = "toy"\nroot = ".."\nmax_images = None',
                       'from hqsam import io\nprint(io.NAME, max_images)'),
    TABLES: ('profile = "toy"', '%time x = 1\nimport hqsam\nprint(hqsam.NAME)'),
}
PACKAGE = {
    "__init__.py": 'NAME = "a stand-in for hqsam"\n',
    "seeding.py": "from . import NAME\n\n\ndef keyed_seed(*key):\n    return len(key)\n",
    "io.py": 'NAME = "io"\n',
    "configs/toy.yaml": "epochs: 1\n",
}


@pytest.fixture
def project(tmp_path, monkeypatch) -> SimpleNamespace:
    notebooks, package = tmp_path / "notebooks", tmp_path / "notebooks" / "hqsam"
    (package / "configs").mkdir(parents=True)
    for name, (parameters, code) in NOTEBOOKS.items():
        notebook = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell(f"# {name}"),
            nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(code)])
        notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
        nbformat.write(notebook, notebooks / name)
    for name, text in PACKAGE.items():
        (package / name).write_text(text)
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    monkeypatch.setattr(reproduce, "NOTEBOOKS", notebooks)
    executed = tmp_path / "runs" / "toy" / "notebooks"
    return SimpleNamespace(root=tmp_path, notebooks=notebooks, package=package, executed=executed,
                           records=lambda: json.loads((executed / reproduce.RECORDS).read_text()))


@pytest.fixture
def fake_papermill(monkeypatch) -> SimpleNamespace:
    """papermill.execute_notebook that copies the notebook and records (name, parameters) in `ran`, or fails for
    the notebook named `fail`."""
    fake = SimpleNamespace(ran=[], fail=None)

    def execute_notebook(source, output, parameters, **kw):
        if Path(source).name == fake.fail:
            raise papermill.PapermillExecutionError(2, 1, "raise", "RuntimeError", "it broke", [])
        fake.ran.append((Path(source).name, parameters))
        notebook = nbformat.read(source, as_version=4)
        nbformat.write(notebook, output)
        return notebook
    monkeypatch.setattr(reproduce.papermill, "execute_notebook", execute_notebook)
    return fake


def test_a_real_run_shows_its_progress_keeps_one_line_per_bar_and_no_absolute_path_then_skips(project, capsys):
    everything = list(NOTEBOOKS)
    assert reproduce.run("toy", root=project.root, package=project.package) == everything
    out = capsys.readouterr().out
    assert "01_data.ipynb: runs: never run (no estimate yet)" in out
    assert "  [3/3] from hqsam.seeding import keyed_seed ..." in out  # parameters, injected parameters, the code
    assert "      data in " in out and "toy SAM: 250/500" not in out  # the cell's latest line, not every state

    data = nbformat.read(project.executed / "01_data.ipynb", as_version=4)
    streams = {output.name: output.text for output in data.cells[-1].outputs}
    assert streams == {"stderr": "toy SAM: 500/500\n", "stdout": "data in .. 1\n"}  # 500 fragments: one line
    assert str(project.root) not in (project.executed / "01_data.ipynb").read_text()
    assert 'root = ".."' in data.cells[2].source  # papermill's injected parameters
    assert "a stand-in for hqsam" in (project.executed / TABLES).read_text()  # its magic ran, its import found

    records = project.records()
    assert sorted(records["01_data.ipynb"]["files"]) == ["hqsam/__init__.py", "hqsam/configs/toy.yaml",
                                                         "hqsam/seeding.py"]  # `from . import NAME` included
    assert sorted(records["02_train.ipynb"]["files"]) == ["hqsam/__init__.py", "hqsam/configs/toy.yaml", "hqsam/io.py"]
    assert records["02_train.ipynb"]["previous"] == records["01_data.ipynb"]["key"]
    assert records["02_train.ipynb"]["parameters"] == {"profile": "toy", "root": ".."}

    assert reproduce.run("toy", root=project.root, package=project.package) == []
    out = capsys.readouterr().out
    assert all(f"{name}: up to date (ran {records[name]['ran']} in " in out for name in everything)


def test_a_stage_reruns_when_its_parameters_code_notebook_or_an_earlier_stage_changed(project, fake_papermill, capsys):
    def run(**kw) -> list:
        capsys.readouterr()
        return reproduce.run("toy", root=project.root, package=project.package, **kw)

    assert run() == list(NOTEBOOKS)
    assert fake_papermill.ran[1] == ("02_train.ipynb", {"profile": "toy", "root": ".."})  # those it declares
    assert run(extra={"max_images": 2}) == ["02_train.ipynb", TABLES]
    out = capsys.readouterr().out
    assert "01_data.ipynb: up to date" in out
    assert "02_train.ipynb: runs again: parameters changed: max_images (took 0 s last time on this machine)" in out
    assert f"{TABLES}: runs again: an earlier stage ran again" in out

    (project.package / "io.py").write_text('NAME = "io, changed"\n')  # imported by 02 only
    assert run(extra={"max_images": 2}) == ["02_train.ipynb", TABLES]
    assert "02_train.ipynb: runs again: hqsam/io.py changed" in capsys.readouterr().out
    (project.package / "__init__.py").write_text('NAME = "changed"\n')  # every stage imports the package
    assert run(extra={"max_images": 2}) == list(NOTEBOOKS)

    source = project.notebooks / "01_data.ipynb"
    notebook = nbformat.read(source, as_version=4)
    notebook.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="old output\n")]
    nbformat.write(notebook, source)
    assert run(extra={"max_images": 2}) == []  # outputs are no part of the notebook's digest
    notebook.cells[2].source += "\nprint('more')"
    nbformat.write(notebook, source)
    assert run(extra={"max_images": 2}) == list(NOTEBOOKS)
    assert "01_data.ipynb: runs again: the notebook changed" in capsys.readouterr().out

    (project.executed / TABLES).unlink()
    assert run(extra={"max_images": 2}) == [TABLES]
    assert f"{TABLES}: runs again: its executed notebook is missing" in capsys.readouterr().out
    assert run(extra={"max_images": 2}, force=True) == list(NOTEBOOKS)

    records, runs, fake_papermill.fail = project.records(), len(fake_papermill.ran), "02_train.ipynb"
    with pytest.raises(papermill.PapermillExecutionError):
        run(extra={"max_images": 3})
    assert project.records() == records and len(fake_papermill.ran) == runs  # and the stage after it did not run
    assert (project.executed / "02_train.ipynb").exists()

    with pytest.raises(ValueError, match="no notebook has the parameter"):
        run(extra={"max_imgs": 2})


def test_readme_changes_only_when_asked_on_a_full_toy_run_at_the_root(project, fake_papermill, monkeypatch, capsys):
    updated = []
    monkeypatch.setattr(reproduce, "update_readme", lambda profile, ablations: updated.append(profile) or True)
    assert reproduce.main([]) == 0
    assert "README.md left alone; make reproduce UPDATE_README=1" in capsys.readouterr().out and not updated
    assert reproduce.main(["--update-readme", "--quick"]) == 0
    assert "only a full toy run at the repository root" in capsys.readouterr().out and not updated
    assert reproduce.main(["--update-readme"]) == 0  # every stage up to date: the build's tables are current
    assert "README.md: the toy results tables were regenerated" in capsys.readouterr().out and updated == ["toy"]
    fake_papermill.fail = TABLES
    assert reproduce.main(["--update-readme", "--force"]) == 1  # a stage failed: README.md is left alone
    assert updated == ["toy"]
    assert reproduce.main(["-p", "max_imgs=2"]) == 2
    assert "error: no notebook has the parameter(s) max_imgs" in capsys.readouterr().err


def test_the_ablations_stage_runs_only_when_asked_and_then_joins_the_readme(project, fake_papermill, monkeypatch,
                                                                             capsys):
    ablations = nbformat.read(project.notebooks / "02_train.ipynb", as_version=4)
    nbformat.write(ablations, project.notebooks / reproduce.ABLATIONS_STAGE)
    assert reproduce.run("toy", root=project.root, package=project.package) == list(NOTEBOOKS)
    assert f"{reproduce.ABLATIONS_STAGE}: left out (make reproduce ABLATIONS=1" in capsys.readouterr().out
    assert reproduce.run("toy", root=project.root, package=project.package, ablations=True) == [
        reproduce.ABLATIONS_STAGE]  # the others are up to date
    records = project.records()
    assert records[reproduce.ABLATIONS_STAGE]["previous"] == records[TABLES]["key"]

    updated = []
    monkeypatch.setattr(reproduce, "update_readme", lambda profile, ablations: updated.append(ablations) or True)
    assert reproduce.main(["--update-readme", "--force", "--ablations"]) == 0
    assert "regenerated from this build, the ablations' with them" in capsys.readouterr().out and updated == [True]
    assert reproduce.main(["--update-readme", "--force"]) == 0
    assert "(no ablation tables: ABLATIONS=1 runs them)" in capsys.readouterr().out and updated == [True, False]


def test_update_readme_fills_the_block_and_says_which_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    tables = tmp_path / "results" / "toy" / "tables"
    tables.mkdir(parents=True)
    for stem in reproduce.README_TABLES:
        (tables / f"{stem}.md").write_text(f"| {stem} |\n")
    (tmp_path / "README.md").write_text(f"intro\n{reproduce.START}\nold\n{reproduce.END}\nrest\n")
    assert reproduce.update_readme("toy")
    text = (tmp_path / "README.md").read_text()
    assert "old" not in text and "| table2_hq_gain |" in text and text.startswith("intro") and text.endswith("rest\n")
    assert f"Produced by `make reproduce` on {reproduce.machine()}, torch " in text
    assert not reproduce.update_readme("paper")
    assert not reproduce.update_readme("toy", ablations=True)  # the ablation tables are missing
    for stem in reproduce.ABLATION_TABLES:
        (tables / f"{stem}.md").write_text(f"| {stem} |\n")
    assert reproduce.update_readme("toy", ablations=True)
    assert "| table4_ablation |" in (tmp_path / "README.md").read_text()


def test_the_terminal_shows_a_bars_latest_state_not_every_fragment(capsys):
    watch, cell = reproduce.Watch(every=3600), nbformat.v4.new_code_cell("# train\nfor step in bar:\n    pass")
    watch.notebook_start(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"), cell]))
    watch.cell_start(cell, 1)
    for step in range(500):
        watch.write(f"\rtoy SAM: {step + 1}/500")
    watch.cell_executed(cell, 1, {})
    assert capsys.readouterr().out.splitlines() == ["  [1/1] for step in bar: ...", "      toy SAM: 500/500",
                                                    "  [1/1] done in 0 s"]


def test_parameters_are_read_as_yaml():
    assert reproduce.parse_parameters(["a=2", "b=[x=1,y]", "c=null"]) == {"a": 2, "b": ["x=1", "y"], "c": None}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        reproduce.parse_parameters(["2a"])


def test_the_stored_notebooks_hold_no_outputs():
    for path in sorted(REPOSITORY_NOTEBOOKS.glob("*.ipynb")):
        cells = [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
        run = [number for number, cell in enumerate(cells, 1) if cell.outputs or cell.execution_count is not None]
        assert not run, f"{path.name}: code cells {run} keep outputs or execution counts (clear them before committing)"
