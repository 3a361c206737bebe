"""Download dataset zips (HQSeg-44K, COCO val2017) and extract each, once, into the tree the readers expect.

`EXPECTED_CONTENTS` declares, per registry name, the folder the archive's tree belongs in (relative to the
dataset root) and the paths that must exist inside it. Nobody has listed the published archives, so where those
paths sit inside an archive is decided from its member names: at the archive's top (placed under the folder), under
the folder's own name (extracted as is), or either of these under one wrapping folder (stripped). An archive that
matches none of these is refused, naming what was expected and what was found. `__MACOSX/` members are skipped and
counted.

Extraction is idempotent and never leaves a half tree that looks complete: each archive is unpacked into a
temporary folder inside the root, its top-level entries are then moved into place (replacing older copies, never
merged with them), and only then is the marker `<root>/.extracted-<name>.json` written with the archive's SHA-256
and those entries. A later run skips an archive whose marker exists, whose entries and expected paths are still in
place, and whose downloaded archive still has that digest or was deleted to save space. A run interrupted before
the marker appears extracts again and removes the leftover temporary folder. Members with absolute paths or `..`
components are refused before anything is written.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..download import REGISTRY, PathLike, default_directory, download, sha256_file
from ..io import atomic_write
from ..profiles import get_profile
from .layout import HQSEG44K_LAYOUT

HQSEG44K_ARCHIVES = ("DIS5K", "cascade_psp", "thin_object_detection")
COCO_ARCHIVES = ("coco_val2017", "coco_annotations_trainval2017")
COCO_ROOT = get_profile("paper").coco_root
MACOS_METADATA = "__MACOSX"


class Contents(NamedTuple):
    """What an archive must leave once extracted: `paths` inside `folder`, both relative to the dataset root."""

    folder: str  # where the archive's tree belongs, relative to the dataset root; "" for the root itself
    paths: Tuple[str, ...]  # what must exist inside `folder` once the archive is extracted


def _layout_paths(folder: str) -> Tuple[str, ...]:
    """The image and mask folders of `HQSEG44K_LAYOUT` under `folder`, relative to it."""
    dirs = {path for spec in HQSEG44K_LAYOUT for path in (spec.image_dir, spec.mask_dir)}
    return tuple(sorted(path[len(folder) + 1 :] for path in dirs if path.startswith(f"{folder}/")))


EXPECTED_CONTENTS: Dict[str, Contents] = {
    **{name: Contents(name, _layout_paths(name)) for name in HQSEG44K_ARCHIVES},
    "coco_val2017": Contents("", ("val2017",)),
    "coco_annotations_trainval2017": Contents("", ("annotations/instances_val2017.json",)),
}


def marker_path(root: PathLike, name: str) -> Path:
    """The marker that says archive `name` was extracted into `root`."""
    return Path(root) / f".extracted-{name}.json"


def _expected_in_place(root: Path, name: str) -> bool:
    """True if every path `EXPECTED_CONTENTS[name]` declares exists under `root`."""
    contents = EXPECTED_CONTENTS[name]
    return all((root / contents.folder / path).exists() for path in contents.paths)


def _is_extracted(root: Path, name: str, archive: Path) -> bool:
    """True if the marker exists, its entries and the expected paths are in place, and the archive is unchanged."""
    marker = marker_path(root, name)
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
        digest, entries = recorded["sha256"], recorded.get("entries", [])
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return False
    if not all((root / entry).exists() for entry in entries) or not _expected_in_place(root, name):
        return False
    return not archive.exists() or sha256_file(archive) == digest


def _unsafe_member(member: str) -> bool:
    parts = member.replace("\\", "/").split("/")
    return member.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", member)) or ".." in parts


def _holds(names: Sequence[str], paths: Sequence[str]) -> bool:
    """True if every path is a member of `names` or a folder with members there."""
    return all(any(name == path or name.startswith(f"{path}/") for name in names) for path in paths)


def _placement(names: Sequence[str], contents: Contents) -> Optional[Tuple[str, str]]:
    """(prefix to strip from every member, folder under the root to put them in), or None if nothing fits."""
    tops = {name.split("/")[0] for name in names}
    wrappers = [""]
    if len(tops) == 1 and all("/" in name for name in names):
        wrappers.append(f"{tops.pop()}/")
    for wrapper in wrappers:
        inner = [name[len(wrapper) :] for name in names]
        if _holds(inner, contents.paths):
            return wrapper, contents.folder
        if contents.folder and _holds(inner, [f"{contents.folder}/{path}" for path in contents.paths]):
            return wrapper, ""
    return None


def extract_zip(archive: PathLike, root: PathLike, name: str) -> List[str]:
    """Unpack `archive` (registry name `name`) into `root` through a temporary folder, in the tree that
    `EXPECTED_CONTENTS[name]` declares; write its marker; return the top-level entries of `root` it put in place.

    Raises ValueError, before writing anything, for a file that is not a zip archive, that holds a member with
    an absolute path or a `..` component, or whose members hold the expected paths in no form it knows.
    """
    archive, root = Path(archive), Path(root)
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"{archive} is not a zip archive; delete it and download it again")
    contents = EXPECTED_CONTENTS[name]
    with zipfile.ZipFile(archive) as zipped:
        unsafe = [member for member in zipped.namelist() if _unsafe_member(member)]
        if unsafe:
            raise ValueError(
                f"{archive} holds {len(unsafe)} member(s) that would land outside {root} "
                f"(e.g. {unsafe[0]!r}); refusing to extract it"
            )
        members = [info for info in zipped.infolist() if info.filename.split("/")[0] != MACOS_METADATA]
        placement = _placement([info.filename for info in members], contents)
        if placement is None:
            tops = sorted({info.filename.split("/")[0] for info in members})
            under = f", under {contents.folder}/" if contents.folder else ""
            raise ValueError(
                f"{archive} ({name}) holds {', '.join(contents.paths)} neither at its top{under} nor under one "
                f"wrapping folder; its top-level entries are {', '.join(tops) or 'none'}; extract it by hand so "
                f"that those paths exist in {root / contents.folder}"
            )
        wrapper, folder = placement
        skipped = len(zipped.infolist()) - len(members)
        if skipped:
            print(f"{archive}: skipped {skipped} macOS metadata member(s) under {MACOS_METADATA}/", file=sys.stderr)
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(f".extracting-{name}-*"):
            shutil.rmtree(leftover)
        marker_path(root, name).unlink(missing_ok=True)  # the tree is about to change
        staging = Path(tempfile.mkdtemp(prefix=f".extracting-{name}-", dir=root))
        try:
            (staging / "new" / folder).mkdir(parents=True)
            for info in members:
                target = staging / "new" / folder / info.filename[len(wrapper) :]
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(info) as source, open(target, "wb") as file:
                    shutil.copyfileobj(source, file)
            entries = sorted(entry.name for entry in (staging / "new").iterdir())
            (staging / "old").mkdir()
            for entry in entries:
                if (root / entry).exists() or (root / entry).is_symlink():
                    os.replace(root / entry, staging / "old" / entry)
                os.replace(staging / "new" / entry, root / entry)
        finally:
            shutil.rmtree(staging)
    marker = {"archive": archive.name, "sha256": sha256_file(archive), "entries": entries}
    with atomic_write(marker_path(root, name), "w") as file:
        json.dump(marker, file, indent=2)
        file.write("\n")
    return entries


def download_archives(
    root: PathLike,
    names: Sequence[str],
    base_url: Optional[str] = None,
    progress: bool = True,
    downloads_dir: Optional[PathLike] = None,
) -> List[str]:
    """Download the archives `names` (keys of `EXPECTED_CONTENTS`) and extract each into `root`; return those
    extracted now.

    Archives go to `downloads_dir` (default: `hqsam.download.default_directory("dataset")`, where
    `hqsam download` puts them too); `base_url` is a mirror (see `hqsam.download.download`). Archives already
    extracted (see the module docstring) use neither the network nor the disk.
    """
    unknown = [name for name in names if name not in EXPECTED_CONTENTS]
    if unknown:
        raise ValueError(
            f"no expected contents for archive(s) {', '.join(unknown)}; known: {', '.join(EXPECTED_CONTENTS)}"
        )
    root = Path(root)
    downloads = Path(downloads_dir) if downloads_dir is not None else default_directory("dataset")
    extracted = []
    for name in names:
        if _is_extracted(root, name, downloads / REGISTRY[name].filename):
            continue
        archive = download(name, downloads, base_url=base_url, progress=progress)
        if progress:
            print(f"extracting {archive} into {root}", file=sys.stderr)
        extract_zip(archive, root, name)
        extracted.append(name)
    return extracted


def download_coco(
    root: PathLike = COCO_ROOT,
    base_url: Optional[str] = None,
    progress: bool = True,
    downloads_dir: Optional[PathLike] = None,
) -> List[str]:
    """Download COCO val2017 and its annotations and extract them, so that `root/val2017/*.jpg` and
    `root/annotations/instances_val2017.json` exist; return the archives extracted now (see `download_archives`).
    """
    return download_archives(root, COCO_ARCHIVES, base_url=base_url, progress=progress, downloads_dir=downloads_dir)
