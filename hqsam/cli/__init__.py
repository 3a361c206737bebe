"""The `hqsam` command line: every sub-command is registered here, each implemented in this package's modules.

  hqsam download NAME ... | --list       checkpoints and archives from the registry (`hqsam.cli.data`)
  hqsam download-data [--coco]           HQSeg-44K (and COCO val2017), extracted and checked (`hqsam.cli.data`)
  hqsam train --config toy|paper|FILE    HQ-SAM's training, one process or many under torchrun (`hqsam.cli.train`)
  hqsam eval hq|coco|box-noise|points|speed   the paper's evaluation protocols (`hqsam.cli.eval`)
  hqsam rehearse DIR                     an offline miniature of the paper profile's inputs (`hqsam.cli.rehearse`)
  hqsam export-onnx --checkpoint PATH --output DIR   the image encoder and prompt decoder as ONNX (`hqsam.cli.onnx`)
  hqsam --debug COMMAND ...              the same, with the traceback of an error in what was given
"""

import argparse
import sys
from typing import List, Optional

from ..download import DownloadError
from ..seeding import use_deterministic_algorithms
from .data import add_download_command, add_download_data_command
from .eval import add_eval_command
from .onnx import add_export_onnx_command
from .rehearse import add_rehearse_command
from .train import add_train_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hqsam", description="HQ-SAM: models, data, training, evaluation")
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_download_command(subparsers)
    add_download_data_command(subparsers)
    add_train_command(subparsers)
    add_eval_command(subparsers)
    add_rehearse_command(subparsers)
    add_export_onnx_command(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run a sub-command; bad input (a wrong key, value, type or path; a missing or unreadable file) ends it with one
    line on stderr, `error: what was wrong; what to do`, and exit status 2; with `--debug`, with its traceback.
    Any other exception is a bug and always shows its traceback."""
    args = build_parser().parse_args(argv)
    use_deterministic_algorithms()
    try:
        return args.func(args)
    except (DownloadError, FileNotFoundError, ValueError) as error:  # CheckpointError is a ValueError
        if args.debug:
            raise
        print("error: " + " ".join(str(error).split()), file=sys.stderr)  # one line, whatever the message's layout
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
