"""Results you can trust: every result records what made it, a resume continues only results of the same
provenance, nothing of other provenance is overwritten in silence, and two runs on one machine give the same tables.

`test_the_users_session_replayed` is the session of issue 11: train, evaluate, train with other settings,
evaluate that, `--summed`, an explicit folder with and without --force."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import hqsam
from conftest import randomize_
from hqsam import provenance
from hqsam.cli import main
from hqsam.data import TOY_LAYOUT, read_layout
from hqsam.eval import evaluate_hq_datasets
from hqsam.toy import generate_toy_world

ROOT = Path(__file__).resolve().parents[1]
TINY = ["epochs=1", "batch_size=2", "loss_points=64", "max_val_images=1", "progress=false", "device=cpu"]


@pytest.fixture()
def toy_profile(tmp_path, monkeypatch) -> Path:
    """A toy profile under tmp_path (the working folder): a tiny toy world (its SAM is the released one)."""
    monkeypatch.chdir(tmp_path)
    make_toy_profile(tmp_path)
    return tmp_path


def make_toy_profile(root: Path) -> None:
    generate_toy_world(root / "data/toy", num_train=6, num_val=2)


def rows_of(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).sort_values(["dataset", "image", "model"]).reset_index(drop=True)


def test_the_users_session_replayed(toy_profile, capsys, one_thread):
    results, default_run = Path("results/toy"), Path("runs/toy/train")
    assert main(["train", "--config", "toy", *TINY, "max_steps=1"]) == 0
    first = default_run / "sam_hq_toy.pth"
    first_sha = provenance.file_sha256(first)
    assert provenance.read_provenance(first)["settings"]["max_steps"] == 1  # the export says what made it
    assert provenance.read_provenance(default_run / "steps.csv")["kind"] == "training"  # so do the run's files
    assert main(["eval", "hq", "--max-images", "2", "--no-progress"]) == 0
    first_rows = (results / "hq_rows.csv").read_text()
    assert provenance.read_provenance(results / "hq_summary.csv")["scope"]["model"]["sha256"] == first_sha

    # Other settings: the run does not overwrite the profile's run, it goes to a folder of its own and says so.
    capsys.readouterr()
    assert main(["train", "--config", "toy", *TINY, "max_steps=2"]) == 0
    said = capsys.readouterr().out
    second_run = next(Path("runs/toy").glob("train-*"))
    assert f"this one goes to {second_run}" in said and provenance.file_sha256(first) == first_sha
    second = second_run / "sam_hq_toy.pth"

    # Evaluating it gives fresh numbers, in a folder of their own: results/toy is not reused, nor overwritten.
    assert main(["eval", "hq", "--checkpoint", str(second), "--max-images", "2", "--no-progress"]) == 0
    elsewhere = next(Path("runs/toy/eval").glob("sam_hq_toy-*"))
    assert f"writing to {elsewhere} instead" in capsys.readouterr().err
    sources = read_layout("data/toy", TOY_LAYOUT, split="val")
    fresh = evaluate_hq_datasets(hqsam.build_hqsam("auto", second), sources, max_images=2, progress=False)
    pd.testing.assert_frame_equal(rows_of(elsewhere / "hq_rows.csv"), fresh.sort_values(
        ["dataset", "image", "model"]).reset_index(drop=True), check_dtype=False)
    assert (results / "hq_rows.csv").read_text() == first_rows

    # --summed is another result: it is not taken from the HQ-token-only rows.
    assert main(["eval", "hq", "--summed", "--max-images", "2", "--no-progress"]) == 0
    assert "writing to" in capsys.readouterr().err and (results / "hq_rows.csv").read_text() == first_rows
    summed = [p for p in Path("runs/toy/eval").glob("*/hq_rows.csv")
              if provenance.read_provenance(p)["settings"]["hq_token_only"] is False]
    assert len(summed) == 1

    # An explicit folder of other provenance is refused (one line naming --force), then replaced with --force.
    assert main(["eval", "hq", "--checkpoint", str(second), "--output", str(results), "--max-images", "2",
                 "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--force" in error and len(error.splitlines()) == 1
    assert main(["eval", "box-noise", "--checkpoint", str(second), "--output", str(results), "--max-images", "2",
                 "--no-progress", "--force"]) == 0
    assert "replacing" in capsys.readouterr().err
    left = [p for p in results.rglob("*.csv")]
    assert {p.name for p in left} == {"box_noise_rows.csv", "box_noise_summary.csv"}  # one consistent set
    assert all(provenance.read_provenance(p)["scope"]["model"]["sha256"] == provenance.file_sha256(second)
               for p in left)

    # Training into an explicit folder that holds another run: refused unless --force.
    assert main(["train", "--config", "toy", *TINY, "max_steps=2", f"output_dir={default_run}x"]) == 0
    assert main(["train", "--config", "toy", *TINY, "max_steps=1", f"output_dir={default_run}x"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["train", "--config", "toy", *TINY, "max_steps=1", f"output_dir={default_run}x", "--force"]) == 0
    assert provenance.read_provenance(Path(f"{default_run}x") / "sam_hq_toy.pth")["settings"]["max_steps"] == 1


def test_a_resume_continues_only_rows_of_the_same_provenance(toy_profile, capsys, one_thread):
    sources = read_layout("data/toy", TOY_LAYOUT, split="val")
    rows_file = Path("rows.csv")
    model = randomize_(hqsam.build_hqsam("toy"), seed=1)
    whole = evaluate_hq_datasets(model, sources, max_images=2, progress=False)
    partial = evaluate_hq_datasets(model, sources[:1], max_images=2, progress=False, rows_file=rows_file)
    made = provenance.read_provenance(rows_file)
    assert made["scope"]["data"][0]["name"] == sources[0].name and len(made["scope"]["data"]) == 1
    assert len(partial) == 2 * 2
    other = randomize_(hqsam.build_hqsam("toy"), seed=2)
    evaluate_hq_datasets(other, sources, max_images=2, progress=False, rows_file=rows_file)
    assert "starting over, not resuming" in capsys.readouterr().err
    assert provenance.read_provenance(rows_file)["scope"]["model"] == provenance.model_identity(other)
    # The same model and settings again: all rows are taken from the file, none recomputed.
    again = evaluate_hq_datasets(other, sources, max_images=2, progress=False, rows_file=rows_file)
    assert "starting over" not in capsys.readouterr().err and len(again) == len(whole)
    # Rows that other code made (here: the record of one file's digest changed) are not reused either.
    saved = json.loads(provenance.sidecar(rows_file).read_text())
    saved["code"]["hqsam/metrics.py"] = "0" * 64
    provenance.sidecar(rows_file).write_text(json.dumps(saved))
    evaluate_hq_datasets(other, sources, max_images=2, progress=False, rows_file=rows_file)
    assert f"code.hqsam/metrics.py: {'0' * 16} ->" in capsys.readouterr().err


def test_differences_name_what_changed_and_combined_results_must_agree(tmp_path):
    scope = {"model": {"sha256": "a" * 64}, "max_images": None}
    old = provenance.describe("hq_benchmark", scope, {"seed": 0}, "hqsam.provenance")
    new = provenance.describe("hq_benchmark", {**scope, "model": {"sha256": "b" * 64}}, {"seed": 1}, "hqsam.provenance")
    assert provenance.differences(old, new) == [f"scope.model.sha256: {'a' * 16} -> {'b' * 16}", "settings.seed: 0 -> 1"]
    assert provenance.differences(old, old) == [] and provenance.differences(None, new) == ["no provenance"]
    moved = {**old, "scope": {**scope, "model": {"sha256": "a" * 64, "checkpoint": "elsewhere/sam_hq_toy.pth"}}}
    assert provenance.differences(old, moved) == []  # the same weights under another path: the same result
    frame = pd.DataFrame({"x": [1]})
    with pytest.raises(ValueError, match="carries no provenance"):
        provenance.save_csv(frame, tmp_path / "a.csv")
    provenance.save_csv(frame, tmp_path / "a.csv", old)
    provenance.save_csv(frame, tmp_path / "b.csv", new)
    with pytest.raises(ValueError, match="different models"):
        provenance.combined("table", [tmp_path / "a.csv", tmp_path / "b.csv"])
    table = provenance.combined("table", [tmp_path / "a.csv"])
    assert table["scope"] == old["scope"] and table["settings"]["inputs"][str(tmp_path / "a.csv")]["kind"] == "hq_benchmark"
    (tmp_path / "c.csv").write_text("x\n1\n")
    with pytest.raises(ValueError, match="has no provenance"):
        provenance.combined("table", [tmp_path / "c.csv"])


def test_claiming_a_folder_refuses_redirects_or_replaces(tmp_path, capsys):
    folder = tmp_path / "results"
    old = provenance.describe("points", {"model": {"sha256": "a" * 64}}, {}, "hqsam.provenance")
    new = provenance.describe("hq_benchmark", {"model": {"sha256": "b" * 64}}, {}, "hqsam.provenance")
    provenance.save_csv(pd.DataFrame({"x": [1]}), folder / "points_rows.csv", old)
    (folder / "legacy.csv").write_text("x\n1\n")
    with pytest.raises(ValueError, match="pass --force"):
        provenance.claim_folder(folder, new, ("hq_rows.csv",))
    own = provenance.own_folders(tmp_path / "runs", new)
    assert provenance.claim_folder(folder, new, ("hq_rows.csv",), elsewhere=own) == own[0]
    other_settings = provenance.describe("hq_benchmark", {"model": {"sha256": "b" * 64}}, {"seed": 1}, "hqsam.provenance")
    provenance.save_csv(pd.DataFrame({"x": [1]}), own[0] / "hq_rows.csv", other_settings)
    assert provenance.claim_folder(folder, new, ("hq_rows.csv",), elsewhere=own) == own[1]  # the same result, other settings
    assert (folder / "points_rows.csv").exists()
    assert provenance.claim_folder(folder, new, ("hq_rows.csv",), force=True) == folder
    assert sorted(p.name for p in folder.iterdir()) == []
    assert "replacing" in capsys.readouterr().err
    same_scope = provenance.describe("points", {"model": {"sha256": "b" * 64}}, {}, "hqsam.provenance")
    provenance.save_csv(pd.DataFrame({"x": [1]}), folder / "points_rows.csv", same_scope)
    assert provenance.claim_folder(folder, new, ("hq_rows.csv",)) == folder  # another protocol, same scope: fine


PIPELINE = """
import sys
from hqsam.cli import main
from hqsam.report import compare_hq_datasets, to_markdown
import pandas as pd
assert main(["train", "--config", "toy", *sys.argv[1:], "max_steps=2"]) == 0
assert main(["eval", "hq", "--max-images", "2", "--no-progress"]) == 0
print("TABLE", to_markdown(compare_hq_datasets(pd.read_csv("results/toy/hq_summary.csv", index_col=0))))
"""


def test_two_toy_runs_on_one_machine_give_identical_tables(tmp_path):
    """Two processes, two folders, the same seed: the same table, to the last digit."""
    tables = []
    for name in ("a", "b"):
        root = tmp_path / name
        make_toy_profile(root)
        done = subprocess.run([sys.executable, "-c", PIPELINE, *TINY], cwd=root, capture_output=True, text=True,
                              env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        tables.append(done.stdout.split("TABLE", 1)[1])
    assert tables[0] == tables[1]
    made = [json.loads((tmp_path / n / "results/toy/hq_rows.csv.provenance.json").read_text()) for n in "ab"]
    assert provenance.differences(made[0], made[1]) == []  # the same trained weights, data and settings


def test_a_training_resume_across_code_changes_is_said_and_the_build_starts_over(toy_profile, capsys, one_thread):
    from hqsam.train import fit, load_config

    config = lambda: load_config("toy", [*TINY, "epochs=2", "max_steps=1", "output_dir=run"])  # noqa: E731
    fit(config())
    record = Path("run/provenance.json")
    saved = json.loads(record.read_text())
    saved["code"]["hqsam/train/loop.py"] = "0" * 64
    record.write_text(json.dumps(saved))
    capsys.readouterr()
    assert fit(config(), resume=True).steps == 1  # --resume: continued (max_steps already reached), and said
    assert "resuming a run that other code made" in capsys.readouterr().out
    record.write_text(json.dumps(saved))
    fit(config(), resume=True, force=True)  # the notebooks: the result of this code, so it starts over
    assert "starting it over" in capsys.readouterr().out
    assert json.loads(record.read_text())["code"] == provenance.code_files("hqsam.train.loop")
