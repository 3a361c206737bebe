"""Provenance: what made a result, written beside it, and the checks that keep results of other makers apart.

A provenance is a JSON dict:
  kind      what the result is: "hq_benchmark", "box_noise", "points", "coco", "speed", "training", "table", ...
  scope     what every result of one results folder shares, so they can be read together: the model (its
            checkpoint's SHA-256, or a digest of its weights), the data (per source: name, split, samples, a
            fingerprint of its files), the encoder's precision, the device type and `max_images`
  settings  the rest of what decides the numbers (the protocol's options, seeds, a training config)
  code      the SHA-256 of every package file that the module making it imports (`code_files`)
  made_by   recorded, never compared: the package version and git commit, the device's name, torch, the date

Result file X keeps it in X.provenance.json; a result that is a folder (a training run, COCO's outputs) in
X/provenance.json, which also stands for the files inside it. `read_provenance` reads either.

Two provenances are the same result when kind, scope, settings and code are equal (`differences` says where they
are not): only then does a resumed evaluation continue from saved rows (`resumable`), and a command writes into a
folder only when that folder holds nothing of another scope and no other version of its own result
(`claim_folder`); otherwise it goes to a folder of its own, or, with force, replaces what was there and says so.
"""

import ast
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

import pandas as pd
import torch

from .io import atomic_write
from .modeling.variants import DEFAULT_VARIANT

PathLike = Union[str, Path]
SUFFIX = ".provenance.json"
FOLDER_FILE = "provenance.json"
COMPARED = ("kind", "scope", "settings", "code")
RECORDED_ONLY = ("scope.model.checkpoint", "scope.sam.checkpoint")  # where the weights were: their SHA-256 decides
RESULT_SUFFIXES = (".csv", ".json", ".jsonl", ".md", ".tex", ".png", ".pdf", ".pth")  # what a results folder holds
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def sidecar(path: PathLike) -> Path:
    """Where the provenance of result `path` is kept: X.provenance.json, or X/provenance.json for a folder."""
    path = Path(path)
    return path / FOLDER_FILE if path.is_dir() else path.with_name(path.name + SUFFIX)


def read_provenance(path: PathLike) -> Optional[dict]:
    """The provenance of a result file or folder: its own, else that of the nearest folder above it that has one
    (a file of a training run); None when there is none. An unreadable provenance is an error."""
    path = Path(path)
    candidates = [sidecar(path)] + [folder / FOLDER_FILE for folder in path.parents]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except ValueError as error:
                raise ValueError(f"{candidate} is not valid JSON ({error}): delete it and rerun what made {path}") from None
    return None


def write_provenance(path: PathLike, provenance: dict) -> Path:
    """Write `provenance` beside result `path` (atomically); return where."""
    target = sidecar(path)
    with atomic_write(target, "w") as file:
        json.dump(provenance, file, indent=1, default=str)
    return target


def save_csv(frame: pd.DataFrame, path: PathLike, provenance: Optional[dict] = None, **to_csv: Any) -> Path:
    """Write `frame` to CSV atomically, then its provenance (`provenance`, else `frame.attrs["provenance"]`)."""
    provenance = provenance if provenance is not None else frame.attrs.get("provenance")
    if provenance is None:
        raise ValueError(f"{path}: the frame carries no provenance (attrs['provenance']); pass provenance=...")
    path = Path(path)
    with atomic_write(path, "w") as file:
        frame.to_csv(file, **to_csv)
    write_provenance(path, provenance)  # after the rows: a crash between the two leaves old provenance, never a wrong one
    return path


@lru_cache(maxsize=None)  # keyed by the source itself: the stages share most modules
def imported_modules(source: str, package: str, within: str = "", filename: str = "<notebook>") -> FrozenSet[str]:
    """The dotted names under `package` that Python `source` (from `filename`) imports, `within` being the source's
    own package (for relative imports). `from a import b` gives a and a.b: whether a.b is a module is for
    `module_file` to say."""
    found = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = within.split(".")[: len(within.split(".")) - node.level + 1] if node.level else []
            module = ".".join(parts + ([node.module] if node.module else []))
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return frozenset(name for name in found if name == package or name.startswith(f"{package}."))


def module_file(name: str, package: Path) -> Optional[Path]:
    """The file of module `name` (dotted, its first part the package's name) under `package`; None if there is none."""
    path = package.joinpath(*name.split(".")[1:])
    return next((c for c in (path / "__init__.py", path.with_suffix(".py")) if c.is_file()), None)


def library_files(code: str, package: Path) -> List[Path]:
    """The files of `package` that Python `code` runs by its imports: each imported module, its parent packages
    (importing a.b runs a first) and, transitively, what those import."""
    todo, seen, files = sorted(imported_modules(code, package.name)), set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = module_file(module, package)
        if path is not None:
            files.add(path)
            within = module if path.name == "__init__.py" else ".".join(parts[:-1])
            todo += imported_modules(path.read_text(), package.name, within, str(path))
    return sorted(files)


@lru_cache(maxsize=None)  # the code a process runs does not change under it: imported modules are not reloaded
def code_files(module: str) -> Dict[str, str]:
    """The SHA-256 of each package file that importing `module` runs (`library_files`): the code of a result."""
    return {file.relative_to(PACKAGE_ROOT).as_posix(): file_sha256(file)
            for file in library_files(f"import {module}", PACKAGE_ROOT / "hqsam")}


def digest(value: Any) -> str:
    """SHA-256 of a JSON value, keys sorted."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    from .download import sha256_file

    return sha256_file(path)


def file_sha256(path: PathLike) -> str:
    """A file's SHA-256, computed once per process for a given size and modification time."""
    stat = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def model_identity(model: torch.nn.Module) -> Dict[str, Optional[str]]:
    """The evaluated weights: the checkpoint `build_hqsam` loaded (`model.checkpoint_path`: its path and SHA-256),
    or, for weights that come from no file, a digest of the state dict; and the variant of one of the paper's
    ablations (`hqsam.modeling.VARIANTS`), which decodes the same weights otherwise."""
    variant = getattr(getattr(model, "mask_decoder", None), "variant", DEFAULT_VARIANT)
    ablation = {"variant": variant} if variant != DEFAULT_VARIANT else {}
    checkpoint = getattr(model, "checkpoint_path", None)
    if checkpoint is not None and Path(checkpoint).is_file():
        return {"checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint), **ablation}
    weights = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"checkpoint": None, "sha256": f"weights:{weights.hexdigest()}", **ablation}


def data_identity(sources: Iterable) -> List[Dict[str, Any]]:
    """Per source: name, split, number of samples and a fingerprint of its files (`FolderSource.fingerprint`)."""
    described = []
    for source in sources:
        fingerprint = source.fingerprint() if hasattr(source, "fingerprint") else digest(
            [str(getattr(source, key, None)) for key in ("annotation_ids", "image_ids")])
        described.append({"name": source.name, "split": getattr(source, "split", None), "samples": len(source),
                          "fingerprint": fingerprint})
    return described


@lru_cache(maxsize=1)
def code_identity() -> Dict[str, Optional[str]]:
    """The package's version, and its git commit (with "dirty" when tracked files differ from it) if it runs
    from a clone."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("hqsam-repro")
    except PackageNotFoundError:
        package = None
    commit = dirty = None
    if (PACKAGE_ROOT / ".git").exists() and shutil.which("git"):
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(PACKAGE_ROOT), *args], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        commit = git("rev-parse", "HEAD") or None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"version": package, "commit": commit, "dirty": dirty}


def machine() -> str:
    """This machine in words: the CPU model and core count, and the GPU when one is visible."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}"


def describe(kind: str, scope: Dict[str, Any], settings: Dict[str, Any], module: str) -> dict:
    """A provenance (see the module docstring) of a result that `module` (a dotted name) makes, with its code
    (`code_files`) and what made it filled in."""
    made_by = {**code_identity(), "machine": machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "python": sys.version.split()[0],
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    made = {"kind": kind, "scope": scope, "settings": settings, "code": code_files(module), "made_by": made_by}
    return json.loads(json.dumps(made, default=str))  # as it reads back from its file: tuples as lists, paths as strings


def evaluation(kind: str, module: str, model: torch.nn.Module, sources: Sequence, precision: str,
               max_images: Optional[int], **settings: Any) -> dict:
    """The provenance of an evaluation of `model` on `sources` by `module` (kind: the protocol; settings: its
    options)."""
    device = next(model.parameters()).device.type
    scope = {"model": model_identity(model), "data": data_identity(sources), "precision": precision,
             "device": device, "max_images": max_images}
    return describe(kind, scope, settings, module)


def differences(old: Optional[dict], new: dict, keys: Sequence[str] = COMPARED) -> List[str]:
    """Where `old` and `new` differ in `keys` (dotted paths, old -> new), e.g. "scope.model.sha256: 1a2b3c4d ->
    5e6f7a8b"; ["no provenance"] when `old` is None. Where the weights were (RECORDED_ONLY) is not compared."""
    if old is None:
        return ["no provenance"]
    found: List[str] = []
    for key in keys:
        _diff(old.get(key), new.get(key), key, found)
    return found


def _diff(old: Any, new: Any, where: str, found: List[str]) -> None:
    if where in RECORDED_ONLY:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in dict.fromkeys([*old, *new]):
            _diff(old.get(key), new.get(key), f"{where}.{key}", found)
    elif old != new:
        found.append(f"{where}: {_short(old)} -> {_short(new)}")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    if isinstance(value, str) and len(value) == 64 or text.startswith("weights:"):
        return text[:16]
    return text if len(text) <= 60 else f"{text[:57]}..."


def scope_differences(old: dict, new: dict) -> List[str]:
    """Where two scopes disagree, on the entries both have (data alone, e.g., has no model)."""
    shared = {key: old["scope"][key] for key in old.get("scope", {}) if key in new.get("scope", {})}
    return differences({"scope": shared}, {"scope": {key: new["scope"][key] for key in shared}}, ("scope",))


def resumable(path: PathLike, provenance: dict) -> bool:
    """Whether saved result `path` may be continued: it exists and has the same provenance. When it exists with
    another, say so (stderr): the run starts over."""
    if not Path(path).exists():
        return False
    changed = differences(read_provenance(path), provenance)
    if changed:
        print(f"{path} was made with other settings ({'; '.join(changed[:3])}): starting over, not resuming",
              file=sys.stderr)
    return not changed


def folder_conflicts(folder: PathLike, provenance: dict, own: Sequence[str]) -> List[Tuple[Path, str]]:
    """What in `folder` would contradict results of `provenance` written there as the files `own` (names in the
    folder): (path, why) for every result of another scope, every result file of unknown provenance, and every
    file of `own` that another version of this result made."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    conflicts: List[Tuple[Path, str]] = []
    for path in sorted(folder.rglob("*")):
        if path.name.endswith(SUFFIX) or path.name == FOLDER_FILE or path.suffix not in RESULT_SUFFIXES:
            continue
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        found = read_provenance(path)
        if found is None:
            why = ["no provenance"]
        elif path.relative_to(folder).parts[0] in own:
            why = differences(found, provenance)
        else:
            why = scope_differences(found, provenance)
        if why:
            conflicts.append((path, "; ".join(why[:3])))
    return conflicts


def claim_folder(folder: PathLike, provenance: dict, own: Sequence[str], force: bool = False,
                 elsewhere: Sequence[PathLike] = ()) -> Path:
    """The folder where results of `provenance` (the files `own`) go: `folder` if it holds nothing they would
    contradict (`folder_conflicts`); else, with `force`, `folder` after removing what contradicts them (each
    named); else the first of the folders `elsewhere` (folders of their own, `own_folders`) that holds nothing
    they contradict; else a ValueError that names --force."""
    folder = Path(folder)
    conflicts = folder_conflicts(folder, provenance, own)
    if not conflicts:
        return folder
    first = f"{conflicts[0][0]} ({conflicts[0][1]})"
    more = f" and {len(conflicts) - 1} more" if len(conflicts) > 1 else ""
    if force:
        for path, why in conflicts:
            print(f"replacing {path}: made by something else ({why})", file=sys.stderr)
            path.unlink()
            sidecar(path).unlink(missing_ok=True)
        return folder
    for other in elsewhere:
        if not folder_conflicts(other, provenance, own):
            print(f"{folder} holds results of other provenance ({first}{more}): writing to {other} instead "
                  "(--force replaces them)", file=sys.stderr)
            return Path(other)
    raise ValueError(f"{folder} holds results of other provenance: {first}{more}; pass --force to replace them, "
                     "or choose another --output")


def own_folders(base: PathLike, provenance: dict) -> Tuple[Path, Path]:
    """Folders of their own for results of `provenance`: base/<model file stem>-<digest of scope and code, 8 hex>,
    which the other protocols' results of the same scope share, and that with -<digest of kind and settings>, for
    when the first holds another version of the same result."""
    model = provenance["scope"].get("model", {})
    stem = Path(model["checkpoint"]).stem if model.get("checkpoint") else "weights"
    scope = {**provenance["scope"], "model": {"sha256": model.get("sha256")}}  # the same weights anywhere
    shared = Path(base) / f"{stem}-{digest([scope, provenance.get('code')])[:8]}"
    return shared, shared.with_name(f"{shared.name}-{digest([provenance['kind'], provenance['settings']])[:8]}")


def combined(kind: str, inputs: Sequence[PathLike], settings: Optional[Dict[str, Any]] = None) -> dict:
    """The provenance of a result made from other results (a table, a figure): their common scope, and per input
    its kind and settings. A ValueError if an input has none or the inputs disagree on the scope."""
    found = []
    for path in inputs:
        provenance = read_provenance(path)
        if provenance is None:
            raise ValueError(f"{path} has no provenance: rerun what makes it (notebook 04, or hqsam eval)")
        found.append((Path(path), provenance))
    scope: Dict[str, Any] = {}
    for path, provenance in found:
        for key, value in provenance["scope"].items():
            if key in scope and scope[key] != value:
                other = next(p for p, q in found if q["scope"].get(key) == scope[key])
                raise ValueError(f"{path} and {other} come from different {key}s: rerun the evaluation so that "
                                 "all results come from one model and one dataset")
            scope[key] = value
    made_of = {str(path): {"kind": p["kind"], "settings": p["settings"], "code": digest(p.get("code"))}
               for path, p in found}
    return describe(kind, scope, {**(settings or {}), "inputs": made_of}, "hqsam.report")
