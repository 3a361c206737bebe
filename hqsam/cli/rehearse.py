"""`hqsam rehearse DIR`: write, and serve as a download mirror, an offline miniature of the paper profile's inputs."""

import argparse
import threading
from pathlib import Path

from ..rehearsal import DETECTIONS_FILE, REHEARSAL_MODEL, serve, write_rehearsal


def _run_rehearse_command(args: argparse.Namespace) -> int:
    folder = write_rehearsal(args.dir, images_per_source=args.images_per_source, coco_images=args.coco_images)
    if not args.serve:
        print(folder)
        return 0
    with serve(folder, args.port) as url:
        print(f"serving {folder} at {url} (Ctrl-C stops); the paper profile against it:")
        print(f"  make reproduce PROFILE=paper MIRROR={url} MODEL_TYPE={REHEARSAL_MODEL} OUT=rehearsal-run "
              f"ARGS='-p coco_detections={Path(folder).resolve() / DETECTIONS_FILE}'", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def add_rehearse_command(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Register `rehearse DIR [--port N] [--no-serve] [--images-per-source N] [--coco-images N]`."""
    parser = subparsers.add_parser(
        "rehearse", help="write and serve an offline miniature of the paper profile's inputs",
        description="Write an offline miniature of every paper-profile input in the released formats (HQSeg-44K "
                    "zips, SAM and HQ-SAM vit_b checkpoints with random weights, COCO val2017 and detections, "
                    "SHA256SUMS) into DIR and serve it on 127.0.0.1 as a download mirror.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--no-serve", dest="serve", action="store_false", help="write the files only")
    parser.add_argument("--images-per-source", type=int, default=2, help="images in each of the 11 sources")
    parser.add_argument("--coco-images", type=int, default=2, help="COCO val2017 images")
    parser.set_defaults(func=_run_rehearse_command)
    return parser
