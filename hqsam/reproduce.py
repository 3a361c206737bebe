"""`python -m hqsam.reproduce --profile toy|paper`: run the notebooks in order with papermill (`make reproduce`).

A build: a stage (notebook) runs only when something its result depends on changed since it last ran. Its record
in `stages.json`, beside the executed notebooks (the profile's `notebooks` folder: runs/<profile>/notebooks/
under --root, under .quick/ for --quick), holds what it ran with, as SHA-256 digests where they are files:
  notebook    its cells' sources (not their outputs)
  parameters  the values it was given
  files       each package file it runs: the hqsam modules its code cells import (found statically) and what
              those import in turn, and the package's data (hqsam/configs/*.yaml, hqsam/paper_tables/*.csv, the
              released toy SAM hqsam/toy/sam_toy.*)
  previous    the key of the stage before it: a stage's inputs are the earlier stages' outputs, so once one runs
              again, every later one does
  key, ran, seconds, machine: a digest of the above with the date; when it ran, for how long, on what
Before a stage it says why it runs ("hqsam/train/loop.py changed", "parameters changed: max_images", ...) and how
long it took last time on this machine; while it runs, each code cell with its duration, and the latest line the
cell printed (a tqdm bar's state) every 20 s at most. --force runs every stage. A failed stage keeps its executed
notebook and its record; its partial notebook is left beside them (.NAME.tmp.ipynb).

Executed notebooks keep one line per progress bar (nbclient merges a cell's streams and applies their carriage
returns) and no absolute path of the root or the repository (`root` is passed relative to notebooks/).
`-p NAME=VALUE` (the value read as YAML) goes to every notebook whose parameters cell declares NAME;
`--model-type` and `--mirror` are such parameters, spelt out. README.md changes only with --update-readme: then the
build's toy tables go in it (every stage up to date or run again), the ablations' when --ablations included them.
"""

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import nbformat
import papermill
import torch

from .io import atomic_write
from .profiles import PROFILES, get_profile
from .provenance import code_identity, digest, file_sha256, library_files, machine
from .train.config import parse_assignments

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PACKAGE = Path(__file__).resolve().parent
# Read by the package's code: inputs of every stage (the released toy SAM among them).
PACKAGE_DATA = ("configs/*.yaml", "paper_tables/*.csv", "toy/sam_toy.*")
RECORDS = "stages.json"
ABLATIONS_STAGE = "06_ablations.ipynb"  # the paper's Tables 3 and 4, trained and evaluated: run when asked for


def stages() -> list:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def parse_parameters(pairs: Sequence[str]) -> Dict[str, object]:
    """`NAME=VALUE` pairs, each value read as YAML (so 2 is an int, [a, b] a list, null is None)."""
    return parse_assignments(pairs, "parameter", "NAME=VALUE", "max_images=2")


def notebook_code(notebook: nbformat.NotebookNode) -> str:
    """The notebook's Python: its code cells without IPython magics (%) and shell lines (!)."""
    return "\n".join(line for cell in notebook.cells if cell.cell_type == "code" for line in cell.source.splitlines()
                     if not line.lstrip().startswith(("%", "!")))


def stage_inputs(path: Path, parameters: dict, package: Path, previous: Optional[str]) -> dict:
    """What a stage's result depends on, as its record holds it (see the module docstring)."""
    notebook = nbformat.read(path, as_version=4)
    try:
        files = library_files(notebook_code(notebook), package)
    except SyntaxError as error:  # in the notebook's code cells (magics dropped) or in a module they import
        raise ValueError(f"{path.name}: cannot read what it imports: {error.filename}, line {error.lineno}: "
                         f"{error.msg}") from None
    files += sorted(file for pattern in PACKAGE_DATA for file in package.glob(pattern))
    return {"notebook": digest([[cell.cell_type, cell.source] for cell in notebook.cells]),
            "parameters": json.loads(json.dumps(parameters, default=str)),  # as it reads back from stages.json
            "files": {file.relative_to(package.parent).as_posix(): file_sha256(file) for file in files},
            "previous": previous}


def _changed(old: dict, new: dict) -> List[str]:
    """The keys whose presence or value differ between `old` and `new`, sorted."""
    return sorted(key for key in old.keys() | new.keys() if (key in old, old.get(key)) != (key in new, new.get(key)))


def reasons(old: Optional[dict], new: dict, executed: Path) -> List[str]:
    """Why a stage must run, from its last record `old` and its inputs now, `new`; [] when it is up to date."""
    if old is None:
        return ["no record of its last run"] if executed.exists() else ["never run"]
    why = [] if executed.exists() else ["its executed notebook is missing"]
    if old["notebook"] != new["notebook"]:
        why.append("the notebook changed")
    parameters = _changed(old["parameters"], new["parameters"])
    if parameters:
        why.append(f"parameters changed: {', '.join(parameters)}")
    files = _changed(old["files"], new["files"])
    why += [f"{file} changed" for file in files[:3]] + ([f"{len(files) - 3} more files changed"] if files[3:] else [])
    if old["previous"] != new["previous"]:
        why.append("an earlier stage ran again")
    return why


def read_records(path: Path) -> Dict[str, dict]:
    """The stage records of `path` (stages.json); none if it is missing or unreadable (then every stage runs)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as error:
        print(f"{path} is unreadable ({error}): every stage runs again", file=sys.stderr)
        return {}


def duration(seconds: float) -> str:
    """`seconds` for a reader: 41 s, 36 min, 2.5 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def summary(source: str, width: int = 70) -> str:
    """A cell's first line of code (its first line if it has none), cut to `width` characters."""
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    line = next((line for line in lines if not line.startswith("#")), lines[0] if lines else "")
    return line if len(line) <= width else f"{line[: width - 3]}..."


class Watch:
    """A running notebook in the terminal: each code cell as it starts (its number and first line) and how long it
    took, and the latest line that the cell printed (a tqdm bar's state), once every `every` seconds at most and
    at its end. Papermill passes it the streams (as stdout_file and stderr_file), nbclient calls its hooks."""

    def __init__(self, every: float = 20.0):
        self.every = every
        self.numbers: Dict[int, int] = {}  # cell index -> its number among the code cells
        self.latest = ""  # the latest line not shown yet
        self.started = self.shown = 0.0
        self.open = False  # the cell's line still waits for its duration

    def notebook_start(self, notebook: nbformat.NotebookNode) -> None:
        code = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code" and cell.source.strip()]
        self.numbers = {index: number for number, index in enumerate(code, 1)}

    def cell_start(self, cell: nbformat.NotebookNode, cell_index: int) -> None:
        if cell_index in self.numbers:
            self.started = self.shown = time.monotonic()
            self.latest = ""
            print(f"  {self._number(cell_index)} {summary(cell.source)} ...", end="", flush=True)
            self.open = True

    def cell_executed(self, cell: nbformat.NotebookNode, cell_index: int, execute_reply: dict) -> None:
        if cell_index in self.numbers:
            if self.latest:
                self._show()
            took = duration(time.monotonic() - self.started)
            print(f" {took}" if self.open else f"  {self._number(cell_index)} done in {took}", flush=True)
            self.open = False

    def write(self, text: str) -> None:
        """Take a stream's text (a message of the kernel's): its last line, after the last carriage return, is the
        latest state."""
        pieces = re.split(r"[\r\n]", text)
        self.latest = next((piece.strip() for piece in reversed(pieces) if piece.strip()), self.latest)
        if self.latest and time.monotonic() - self.shown >= self.every:
            self._show()

    def flush(self) -> None:
        """Papermill flushes its stream files after each write; what Watch shows it prints with a flush."""

    def _number(self, cell_index: int) -> str:
        return f"[{self.numbers[cell_index]}/{len(self.numbers)}]"

    def _show(self) -> None:
        if self.open:
            print()
        print(f"      {self.latest}", flush=True)
        self.open, self.latest, self.shown = False, "", time.monotonic()


def relative_paths(value: Any, folders: Dict[str, str]) -> Any:
    """`value` (a JSON value) with every absolute folder of `folders` in its strings replaced by its relative path."""
    alternatives = "|".join(map(re.escape, sorted(folders, key=len, reverse=True)))
    pattern = re.compile(rf"(?<![\w.\-])(?:{alternatives})(?![\w.\-])")

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return pattern.sub(lambda match: folders[match.group()], item)
        if isinstance(item, list):
            return [walk(entry) for entry in item]
        return {key: walk(entry) for key, entry in item.items()} if isinstance(item, dict) else item
    return walk(value)


def execute(notebook: Path, executed: Path, parameters: dict, root: Path) -> None:
    """Run `notebook` with papermill into `executed`, showing its progress (`Watch`), with paths under `root` and the
    repository relative to notebooks/. A failed run leaves `executed` as it was and its partial notebook beside it."""
    temporary = executed.with_name(f".{executed.name}.tmp.ipynb")
    watch = Watch()
    try:
        result = papermill.execute_notebook(
            str(notebook), str(temporary), parameters=parameters, cwd=str(NOTEBOOKS), kernel_name="python3",
            progress_bar=False, stdout_file=watch, stderr_file=watch, coalesce_streams=True,
            on_notebook_start=watch.notebook_start, on_cell_start=watch.cell_start,
            on_cell_executed=watch.cell_executed,
        )
    except papermill.PapermillExecutionError:
        print(f"{notebook.name}: failed; its partial notebook is {temporary}", file=sys.stderr)
        raise
    folders = {str(folder): os.path.relpath(folder, NOTEBOOKS) for folder in (root, ROOT)}
    with atomic_write(executed, "w") as file:
        nbformat.write(nbformat.from_dict(relative_paths(result, folders)), file)
    temporary.unlink()


def run(
    profile: str, device: str = "auto", ngpus: int = 1, force: bool = False, quick: bool = False,
    root: Path = ROOT, extra: Dict[str, object] = None, package: Path = PACKAGE, ablations: bool = False,
) -> List[str]:
    """Execute, in order, every stage that is not up to date (all with `force`); return the names of those that ran.
    The ablations stage (ABLATIONS_STAGE) is one of them only with `ablations`. `extra` parameters go to the
    notebooks that declare them (each must be declared by one at least); `package` is the package whose files the
    stages' records digest."""
    started, here = time.perf_counter(), machine()
    root = Path(root).resolve()
    output = get_profile(profile, root, quick, (extra or {}).get("model_type")).notebooks
    declared = {notebook: set(papermill.inspect_notebook(str(notebook))) for notebook in stages()}
    unknown = sorted(set(extra or {}) - set().union(*declared.values()))
    if unknown:
        raise ValueError(f"no notebook has the parameter(s) {', '.join(unknown)}")
    output.mkdir(parents=True, exist_ok=True)
    offered = {"profile": profile, "device": device, "root": os.path.relpath(root, NOTEBOOKS), "quick": quick,
               "ngpus": ngpus, "widget_ui": False,  # a live widget in a batch kernel can leave papermill waiting
               **(extra or {})}
    records, ran, previous = read_records(output / RECORDS), [], None
    for notebook, names in declared.items():
        if notebook.name == ABLATIONS_STAGE and not ablations:
            print(f"{notebook.name}: left out (make reproduce ABLATIONS=1, --ablations, runs it)")
            continue
        parameters = {name: value for name, value in offered.items() if name in names}
        inputs = stage_inputs(notebook, parameters, package, previous)
        old, executed = records.get(notebook.name), output / notebook.name
        why = ["--force"] if force else reasons(old, inputs, executed)
        if not why:
            print(f"{notebook.name}: up to date (ran {old['ran']} in {duration(old['seconds'])})")
            previous = old["key"]
            continue
        known = old is not None and old["machine"] == here
        estimate = f"took {duration(old['seconds'])} last time on this machine" if known else "no estimate yet"
        print(f"{notebook.name}: {'runs' if old is None else 'runs again'}: {'; '.join(why)} ({estimate})", flush=True)
        begun, date = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
        execute(notebook, executed, parameters, root)
        seconds = round(time.perf_counter() - begun, 1)
        records[notebook.name] = {"key": digest({**inputs, "ran": date, "seconds": seconds}), **inputs,
                                  "ran": date, "seconds": seconds, "machine": here}
        with atomic_write(output / RECORDS, "w") as file:
            json.dump(records, file, indent=1)
        print(f"{notebook.name}: done in {duration(seconds)}", flush=True)
        previous = records[notebook.name]["key"]
        ran.append(notebook.name)
    print(f"{len(ran)} of {len(declared)} stages ran, in {duration(time.perf_counter() - started)}; executed notebooks "
          f"and their records ({RECORDS}) in {output}")
    return ran


README_TABLES = ("table2_hq_gain", "table13_box_noise")
ABLATION_TABLES = ("table3_ablation", "table4_ablation")  # in README.md when the same run ran the ablations stage
START, END = "<!-- toy-results:start -->", "<!-- toy-results:end -->"


def produced_by() -> str:
    """The README block's last line: the machine, torch, the commit and the date of the run."""
    code = code_identity()
    commit = f", commit {code['commit'][:7]}{' with local changes' if code['dirty'] else ''}" if code["commit"] else ""
    date = time.strftime("%Y-%m-%d")
    return f"Produced by `make reproduce` on {machine()}, torch {torch.__version__}{commit}, {date}."


def update_readme(profile: str = "toy", ablations: bool = False) -> bool:
    """Put the run's generated Markdown tables into README.md between the toy-results markers (toy runs only), with
    a line that says which machine produced them; the ablation tables too with `ablations` (the run ran them)."""
    readme, tables = ROOT / "README.md", get_profile(profile, ROOT).results / "tables"
    text = readme.read_text()
    names = README_TABLES + (ABLATION_TABLES if ablations else ())
    if profile != "toy" or START not in text or not all((tables / f"{t}.md").exists() for t in names):
        return False
    generated = "\n\n".join((tables / f"{t}.md").read_text().strip() for t in names)
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{generated}\n\n{produced_by()}\n{END}{tail}")
    return True


def readme_outcome(asked: bool, profile: str, quick: bool, root: Path, ablations: bool) -> str:
    """Update README.md if `asked` and this was a full toy run at the repository root (the ablation tables too when
    the run included the ablations stage); say what became of it. The run ended with every stage it included up to
    date or run again, so the tables are those of the current notebooks, code and parameters."""
    if not asked:
        return "README.md left alone; make reproduce UPDATE_README=1 (--update-readme) puts this run's toy tables in it"
    if profile != "toy" or quick or Path(root).resolve() != ROOT:
        return "README.md left alone: only a full toy run at the repository root (no --quick, no --root) updates it"
    if not update_readme(profile, ablations):
        return "README.md left alone: it has no toy-results markers, or the run wrote no tables"
    return ("README.md: the toy results tables were regenerated from this build" +
            (", the ablations' with them" if ablations else " (no ablation tables: ABLATIONS=1 runs them)"))


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
    parser.add_argument("--ablations", action="store_true",
                        help=f"run {ABLATIONS_STAGE} too: the paper's Tables 3 and 4, each variant trained and evaluated")
    parser.add_argument("--update-readme", action="store_true",
                        help="put the build's toy tables in README.md (a full toy run at the repository root)")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="a notebook parameter (YAML value), for every notebook that declares it")
    args = parser.parse_args(argv)
    try:
        extra = parse_parameters(args.parameter)
        extra.update({k: v for k, v in (("model_type", args.model_type), ("mirror", args.mirror)) if v is not None})
        run(args.profile, args.device, args.ngpus, args.force, args.quick, args.root, extra, ablations=args.ablations)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except papermill.PapermillExecutionError as error:
        print(f"error: a notebook failed ({error.ename}: {error.evalue})", file=sys.stderr)
        return 1
    print(readme_outcome(args.update_readme, args.profile, args.quick, args.root, args.ablations))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
