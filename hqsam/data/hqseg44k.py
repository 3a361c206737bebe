"""Download and extract HQSeg-44K (three zip archives) into a dataset root, once, and report what arrived.

Extraction is idempotent and never leaves a half tree that looks complete: each archive is unpacked into a
temporary folder inside the root, its top-level entries are then moved into place (replacing older copies), and
only then is the marker `<root>/.extracted-<name>.json` written with the archive's SHA-256. A later run skips an
archive whose marker exists, whose top-level entries are still in place, and whose downloaded archive still has
that digest or was deleted to save space. A run interrupted before the marker appears extracts again and
removes the leftover temporary folder. Members with absolute paths or `..` components are refused before
anything is written.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Optional, Sequence

from ..io import atomic_write
from ..download import REGISTRY, DownloadError, PathLike, default_directory, download, sha256_file
from .layout import HQSEG44K_LAYOUT
from .sources import missing_sources, read_layout, validation_report

ARCHIVES = ("DIS5K", "cascade_psp", "thin_object_detection")
DEFAULT_ROOT = Path("data/hqseg44k")


def marker_path(root: PathLike, name: str) -> Path:
    return Path(root) / f".extracted-{name}.json"


def _is_extracted(root: Path, name: str, archive: Path) -> bool:
    """True if the marker exists, the entries it lists are in place, and the archive has its digest or is gone."""
    marker = marker_path(root, name)
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
        digest, entries = recorded["sha256"], recorded.get("entries", [])
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return False
    if not all((root / entry).exists() for entry in entries):
        return False
    return not archive.exists() or sha256_file(archive) == digest


def _unsafe_member(member: str) -> bool:
    parts = member.replace("\\", "/").split("/")
    return member.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", member)) or ".." in parts


def extract_zip(archive: PathLike, root: PathLike, name: str) -> List[str]:
    """Unpack `archive` into `root` through a temporary folder; write its marker; return its top-level entries.

    Raises ValueError, before writing anything, for a file that is not a zip archive or that holds a member
    with an absolute path or a `..` component.
    """
    archive, root = Path(archive), Path(root)
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"{archive} is not a zip archive; delete it and download it again")
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(f".extracting-{name}-*"):
        shutil.rmtree(leftover)
    with zipfile.ZipFile(archive) as zipped:
        unsafe = [member for member in zipped.namelist() if _unsafe_member(member)]
        if unsafe:
            raise ValueError(
                f"{archive} holds {len(unsafe)} member(s) that would land outside {root} "
                f"(e.g. {unsafe[0]!r}); refusing to extract it"
            )
        marker_path(root, name).unlink(missing_ok=True)  # the tree is about to change
        staging = Path(tempfile.mkdtemp(prefix=f".extracting-{name}-", dir=root))
        try:
            zipped.extractall(staging / "new")
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


def download_hqseg44k(
    root: PathLike,
    archives: Sequence[str] = ARCHIVES,
    base_url: Optional[str] = None,
    progress: bool = True,
    downloads_dir: Optional[PathLike] = None,
) -> List[str]:
    """Download the HQSeg-44K `archives` (registry names) and extract each into `root`; return those extracted now.

    Archives go to `downloads_dir` (default: `hqsam.download.default_directory("dataset")`, where
    `hqsam download` puts them too); `base_url` is a mirror (see `hqsam.download.download`). Archives already
    extracted (see the module docstring) use neither the network nor the disk.
    """
    unknown = [name for name in archives if name not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown archive(s) {', '.join(unknown)}; HQSeg-44K's are {', '.join(ARCHIVES)}")
    root = Path(root)
    downloads = Path(downloads_dir) if downloads_dir is not None else default_directory("dataset")
    extracted = []
    for name in archives:
        if _is_extracted(root, name, downloads / REGISTRY[name].filename):
            continue
        archive = download(name, downloads, base_url=base_url, progress=progress)
        if progress:
            print(f"extracting {archive} into {root}", file=sys.stderr)
        extract_zip(archive, root, name)
        extracted.append(name)
    return extracted


def _run_download_data_command(args: argparse.Namespace) -> int:
    try:
        download_hqseg44k(args.dir, args.only, base_url=args.mirror, progress=args.progress,
                          downloads_dir=args.downloads)
    except (DownloadError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    missing = missing_sources(args.dir, HQSEG44K_LAYOUT)
    present = tuple(spec for spec in HQSEG44K_LAYOUT if spec not in missing)
    sources = read_layout(args.dir, present)
    if sources:
        print(validation_report(sources).to_string(index=False))
        for source in sources:
            if source.report.skipped or source.report.unpaired_images or source.report.unpaired_masks:
                print(source.report)
    for spec in missing:
        print(
            f"missing: {spec.split}/{spec.name} (expected images in {Path(args.dir) / spec.image_dir} and masks in "
            f"{Path(args.dir) / spec.mask_dir})",
            file=sys.stderr,
        )
    return 1 if missing else 0


def add_download_data_command(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> argparse.ArgumentParser:
    """Register `download-data [--dir ROOT] [--downloads DIR] [--mirror URL] [--no-progress] [--only NAME ...]`."""
    parser = subparsers.add_parser(
        "download-data",
        help="download, extract and check the HQSeg-44K training and evaluation data",
        description=(
            "Download the HQSeg-44K archives (resumable, SHA-256 verified), extract them once into ROOT, and print "
            "a validation report of every source (counts against the released ones, skipped files named)."
        ),
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_ROOT, metavar="ROOT", help=f"dataset root (default: {DEFAULT_ROOT})"
    )
    parser.add_argument(
        "--downloads", type=Path, default=None, metavar="DIR",
        help="where the archives are kept (default: $HQSAM_HOME, else ./data/downloads)",
    )
    parser.add_argument(
        "--mirror", default=None, metavar="URL", help="base URL that replaces the official one (or $HQSAM_MIRROR)"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument(
        "--only", nargs="+", choices=ARCHIVES, default=list(ARCHIVES), metavar="NAME",
        help=f"archives to fetch (default: all of {', '.join(ARCHIVES)})",
    )
    parser.set_defaults(func=_run_download_data_command)
    return parser
