"""Download and extract HQSeg-44K (three zip archives) into a dataset root, once, and report what arrived.

The archives end in the release's tree (`hqsam.data.layout.HQSEG44K_LAYOUT`) whether or not they wrap their
folders; extraction and its guarantees are those of `hqsam.data.archives`, whose `download_coco` (COCO
val2017 and its annotations) is re-exported here for the notebooks.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from ..download import DownloadError, PathLike
from ..profiles import get_profile
from .archives import COCO_ROOT, HQSEG44K_ARCHIVES, download_archives, download_coco
from .layout import HQSEG44K_LAYOUT
from .sources import missing_sources, read_layout, validation_report

__all__ = ["DEFAULT_ROOT", "add_download_data_command", "download_coco", "download_hqseg44k"]

DEFAULT_ROOT = get_profile("paper").data_root


def download_hqseg44k(
    root: PathLike,
    archives: Sequence[str] = HQSEG44K_ARCHIVES,
    base_url: Optional[str] = None,
    progress: bool = True,
    downloads_dir: Optional[PathLike] = None,
) -> List[str]:
    """Download the HQSeg-44K `archives` (registry names) and extract each into `root`; return those extracted now.

    See `hqsam.data.archives.download_archives` for where they are kept and when one is skipped.
    """
    unknown = [name for name in archives if name not in HQSEG44K_ARCHIVES]
    if unknown:
        raise ValueError(
            f"unknown archive(s) {', '.join(unknown)}; HQSeg-44K's are {', '.join(HQSEG44K_ARCHIVES)}"
        )
    return download_archives(root, archives, base_url=base_url, progress=progress, downloads_dir=downloads_dir)


def _run_download_data_command(args: argparse.Namespace) -> int:
    try:
        download_hqseg44k(args.dir, args.only, base_url=args.mirror, progress=args.progress,
                          downloads_dir=args.downloads)
        if args.coco is not None:
            download_coco(args.coco, base_url=args.mirror, progress=args.progress, downloads_dir=args.downloads)
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
    """Register `download-data [--dir ROOT] [--downloads DIR] [--mirror URL] [--no-progress] [--only NAME ...]
    [--coco [DIR]]`."""
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
        "--only", nargs="+", choices=HQSEG44K_ARCHIVES, default=list(HQSEG44K_ARCHIVES), metavar="NAME",
        help=f"archives to fetch (default: all of {', '.join(HQSEG44K_ARCHIVES)})",
    )
    parser.add_argument(
        "--coco", type=Path, nargs="?", const=COCO_ROOT, default=None, metavar="DIR",
        help=f"also COCO val2017 and its annotations, into DIR (default: {COCO_ROOT})",
    )
    parser.set_defaults(func=_run_download_data_command)
    return parser
