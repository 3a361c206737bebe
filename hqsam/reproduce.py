"""`python -m hqsam.reproduce --profile toy|paper`: run the notebooks in order with papermill (`make reproduce`).

Executed notebooks go to the profile's `notebooks` folder (runs/<profile>/notebooks/ under --root); a stage whose
executed notebook exists is skipped unless --force (a failed run leaves none behind: it is written under a
temporary name and renamed on success). `-p NAME=VALUE` (the value read as YAML) goes to every notebook whose
parameters cell declares NAME; `--model-type` and `--mirror` are such parameters, spelt out.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, Sequence

import papermill

from .profiles import PROFILES, get_profile
from .train.config import parse_assignments

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def stages() -> list:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def parse_parameters(pairs: Sequence[str]) -> Dict[str, object]:
    """`NAME=VALUE` pairs, each value read as YAML (so 2 is an int, [a, b] a list, null is None)."""
    return parse_assignments(pairs, "parameter", "NAME=VALUE", "max_images=2")


def run(
    profile: str, device: str = "auto", ngpus: int = 1, force: bool = False, quick: bool = False,
    root: Path = ROOT, extra: Dict[str, object] = None,
) -> Path:
    """Execute every stage; `extra` parameters go to the notebooks that declare them (each must be declared by
    one at least)."""
    root = Path(root).resolve()
    output = get_profile(profile, root, model_type=(extra or {}).get("model_type")).notebooks
    declared = {notebook: set(papermill.inspect_notebook(str(notebook))) for notebook in stages()}
    unknown = sorted(set(extra or {}) - set().union(*declared.values()))
    if unknown:
        raise ValueError(f"no notebook has the parameter(s) {', '.join(unknown)}")
    output.mkdir(parents=True, exist_ok=True)
    for notebook, names in declared.items():
        executed = output / notebook.name
        if executed.exists() and not force:
            print(f"{notebook.name}: done before ({executed}); --force runs it again")
            continue
        offered = {"profile": profile, "device": device, "root": str(root), "quick": quick, "ngpus": ngpus,
                   "widget_ui": False,  # a live widget in a batch kernel can leave papermill waiting
                   **(extra or {})}
        parameters = {name: value for name, value in offered.items() if name in names}
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
    readme, tables = ROOT / "README.md", get_profile(profile, ROOT).results / "tables"
    text = readme.read_text()
    if profile != "toy" or START not in text or not all((tables / f"{t}.md").exists() for t in README_TABLES):
        return False
    generated = "\n\n".join((tables / f"{t}.md").read_text().strip() for t in README_TABLES)
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{generated}\n{END}{tail}")
    return True


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, default="toy")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ngpus", type=int, default=1, help="processes for training on the paper profile (torchrun)")
    parser.add_argument("--force", action="store_true", help="run every stage again")
    parser.add_argument("--quick", action="store_true", help="the small sizes CI uses")
    parser.add_argument("--root", type=Path, default=ROOT, help="where data, checkpoints, runs and results go")
    parser.add_argument("--model-type", default=None, help="the paper profile's backbone (default vit_l)")
    parser.add_argument("--mirror", default=None, help="base URL that replaces the official downloads")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="a notebook parameter (YAML value), for every notebook that declares it")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        extra = parse_parameters(args.parameter)
        extra.update({k: v for k, v in (("model_type", args.model_type), ("mirror", args.mirror)) if v is not None})
        output = run(args.profile, args.device, args.ngpus, args.force, args.quick, args.root, extra)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except papermill.PapermillExecutionError as error:
        print(f"error: a notebook failed ({error.ename}: {error.evalue}); its partial output is in runs/", file=sys.stderr)
        return 1
    print(f"all stages done in {time.perf_counter() - started:.0f} s; executed notebooks in {output}")
    if not args.quick and Path(args.root).resolve() == ROOT and update_readme(args.profile):
        print("README.md: the toy results tables were regenerated from this run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
