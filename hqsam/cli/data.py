"""`hqsam download` (registry files: checkpoints, archives) and `hqsam download-data` (HQSeg-44K, COCO)."""

import argparse
import sys
from pathlib import Path

from ..data.archives import COCO_ROOT, HQSEG44K_ARCHIVES
from ..data.hqseg44k import DEFAULT_ROOT, download_coco, download_hqseg44k
from ..data.layout import HQSEG44K_LAYOUT
from ..data.sources import missing_sources, read_layout, validation_report
from ..download import REGISTRY, DownloadError, RemoteFile, download, registry_entry


def _size_text(entry: RemoteFile) -> str:
    if entry.size is None:
        return entry.size_hint or "?"
    return f"{entry.size / 1e9:.1f} GB" if entry.size >= 1e9 else f"{entry.size / 1e6:.0f} MB"


def _list_registry() -> None:
    width = max(len(name) for name in REGISTRY)
    for entry in REGISTRY.values():
        print(f"{entry.name:<{width}}  {entry.kind:<10}  {_size_text(entry):>7}  {entry.url}")


def _run_download_command(args: argparse.Namespace) -> int:
    if args.list:
        _list_registry()
        return 0
    if not args.names:
        print("error: name at least one file to download (`hqsam download --list` shows them)", file=sys.stderr)
        return 2
    try:
        for name in args.names:
            registry_entry(name)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        for name in args.names:
            print(download(name, args.dir, base_url=args.mirror, progress=args.progress))
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def add_download_command(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Register `download NAME [NAME ...] [--dir DIR] [--mirror URL] [--no-progress]` and `download --list`."""
    parser = subparsers.add_parser(
        "download",
        help="download official checkpoints and datasets",
        description="Download official checkpoints and datasets (resumable, SHA-256 verified).",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="registry names (see --list)")
    parser.add_argument("--list", action="store_true", help="print the available files and exit")
    parser.add_argument(
        "--dir", type=Path, default=None,
        help="destination directory (default: $HQSAM_HOME, else ./checkpoints or ./data/downloads)",
    )
    parser.add_argument("--mirror", default=None, help="base URL that replaces the official one (or $HQSAM_MIRROR)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=_run_download_command)
    return parser


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
