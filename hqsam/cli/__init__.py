"""The `hqsam` command line: every sub-command is registered here, each implemented in this package's modules.

  hqsam download NAME ... | --list       checkpoints and archives from the registry (`hqsam.cli.data`)
  hqsam download-data [--coco]           HQSeg-44K (and COCO val2017), extracted and checked (`hqsam.cli.data`)
  hqsam train --config toy|paper|FILE    HQ-SAM's training, one process or many under torchrun (`hqsam.cli.train`)
  hqsam eval hq|coco|box-noise|points|speed   the paper's evaluation protocols (`hqsam.cli.eval`)
  hqsam rehearse DIR                     an offline miniature of the paper profile's inputs (`hqsam.cli.rehearse`)
"""

import argparse
import sys
from typing import List, Optional

from ..download import DownloadError
from .data import add_download_command, add_download_data_command
from .eval import add_eval_command
from .rehearse import add_rehearse_command
from .train import add_train_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hqsam", description="HQ-SAM: models, data, training, evaluation")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_download_command(subparsers)
    add_download_data_command(subparsers)
    add_train_command(subparsers)
    add_eval_command(subparsers)
    add_rehearse_command(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run a sub-command; bad input (a missing or unreadable file, a wrong value) ends it with one line on stderr
    that says what was wrong, and exit status 1."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DownloadError, FileNotFoundError, ValueError) as error:  # CheckpointError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
