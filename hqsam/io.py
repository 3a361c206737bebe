"""Atomic writes: a file or a built folder is either absent, its old version, or complete; never half written.

`atomic_write` does it for one file, `build_once` for a folder built by a function: the folder is built beside
its target, ends with a manifest (who built it, with what parameters, how many files where) and replaces the
target in one rename; a second build with the same parameters finds the manifest and does nothing.
"""

import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Dict, Iterator, List, Optional, Union

MANIFEST = "manifest.json"


@contextmanager
def atomic_write(path: Union[str, Path], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it and rename it onto `path` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _read_manifest(target: Path) -> Optional[dict]:
    """The target's manifest, {} if it is unreadable, None if there is none (or `target` is not a folder)."""
    try:
        with open(target / MANIFEST) as file:
            manifest = json.load(file)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _count_mismatches(target: Path, files: Dict[str, int]) -> List[str]:
    """Folders of `target` whose file count differs from the manifest's."""
    wrong = []
    for folder, expected in files.items():
        found = sum(1 for entry in os.scandir(target / folder) if entry.is_file()) if (target / folder).is_dir() else 0
        if found != expected:
            wrong.append(f"{folder}: {found} files, manifest says {expected}")
    return wrong


def build_once(
    target: Path, params: dict, build: Callable[[Path], Dict[str, int]], overwrite: bool, version: int = 1
) -> None:
    """Run `build` into a fresh folder that then replaces `target`, unless `target` already holds this build.

    `build` fills the folder and returns its file count per subfolder. The manifest (the generator, i.e. `build`'s
    module; `version`; `params`; the counts) is written last, and the folder moves onto `target` in one rename, so
    `target` is complete or absent. A `target` whose manifest has this version and params and whose counts match
    is left as it is; one without a manifest is replaced only with `overwrite`. Bump `version` when the same params
    would build different files.
    """
    if target.exists() and not overwrite:
        manifest = _read_manifest(target)
        if manifest is None:
            raise ValueError(
                f"{target} exists but has no {MANIFEST}, so it was not written by this generator (or was damaged): "
                "delete it, pick another root, or pass overwrite=True to replace it"
            )
        if manifest.get("version") == version and manifest.get("params") == params:
            wrong = _count_mismatches(target, manifest.get("files", {}))
            if not wrong:
                return
            print(f"{target} is incomplete ({'; '.join(wrong)}); generating it again", file=sys.stderr)
        else:
            print(f"{target} was generated with other settings ({manifest.get('params')}, version "
                  f"{manifest.get('version')}); generating it again with {params}, version {version}", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the dataset it becomes is for everyone to read
    try:
        files = build(staging)
        manifest = {"generator": build.__module__, "version": version, "params": params, "files": files}
        with atomic_write(staging / MANIFEST, "w") as file:
            json.dump(manifest, file, indent=1)
        if target.exists():
            retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
