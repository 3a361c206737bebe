"""`python -m hqsam.reproduce --profile toy|paper`: run the notebooks in order with papermill (`make reproduce`).

Executed notebooks go to runs/<profile>/notebooks/; a stage whose executed notebook exists is skipped unless
--force (a failed run leaves none behind: it is written under a temporary name and renamed on success).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import papermill

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def stages() -> list:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def run(profile: str, device: str = "auto", ngpus: int = 1, force: bool = False, quick: bool = False) -> Path:
    output = ROOT / "runs" / profile / "notebooks"
    output.mkdir(parents=True, exist_ok=True)
    for notebook in stages():
        executed = output / notebook.name
        if executed.exists() and not force:
            print(f"{notebook.name}: done before ({executed}); --force runs it again")
            continue
        parameters = {"profile": profile, "device": device, "root": str(ROOT), "quick": quick}
        if notebook.name.startswith("02_"):
            parameters["ngpus"] = ngpus
        if notebook.name.startswith("03_"):
            parameters["widget_ui"] = False  # a live widget in a batch kernel can leave papermill waiting
        started = time.perf_counter()
        print(f"{notebook.name}: running", flush=True)
        temporary = executed.with_name(f".{executed.name}.tmp.ipynb")
        papermill.execute_notebook(
            str(notebook), str(temporary), parameters=parameters, cwd=str(NOTEBOOKS), kernel_name="python3",
            progress_bar=False,
        )
        os.replace(temporary, executed)
        print(f"{notebook.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return output


README_TABLES = ("table2_hq_gain", "table13_box_noise")
START, END = "<!-- toy-results:start -->", "<!-- toy-results:end -->"


def update_readme(profile: str = "toy") -> bool:
    """Put the run's generated Markdown tables into README.md between the toy-results markers (toy runs only)."""
    readme, tables = ROOT / "README.md", ROOT / "results" / profile / "tables"
    text = readme.read_text()
    if profile != "toy" or START not in text or not all((tables / f"{t}.md").exists() for t in README_TABLES):
        return False
    generated = "\n\n".join((tables / f"{t}.md").read_text().strip() for t in README_TABLES)
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{generated}\n{END}{tail}")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("toy", "paper"), default="toy")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ngpus", type=int, default=1, help="GPUs for training on the paper profile (torchrun)")
    parser.add_argument("--force", action="store_true", help="run every stage again")
    parser.add_argument("--quick", action="store_true", help="the small sizes CI uses")
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        output = run(args.profile, args.device, args.ngpus, args.force, args.quick)
    except papermill.PapermillExecutionError as error:
        print(f"error: a notebook failed ({error.ename}: {error.evalue}); its partial output is in runs/", file=sys.stderr)
        return 1
    print(f"all stages done in {time.perf_counter() - started:.0f} s; executed notebooks in {output}")
    if not args.quick and update_readme(args.profile):
        print("README.md: the toy results tables were regenerated from this run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
