"""The `hqsam` command line."""

import argparse
from typing import List, Optional

from .data.hqseg44k import add_download_data_command
from .download import add_download_command
from .eval.cli import add_eval_command
from .rehearsal import add_rehearse_command
from .train.cli import add_train_command


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
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
