"""`hqsam train --config toy|paper|PATH.yaml [key=value ...] [--resume]`."""

import argparse

import torch.distributed as dist

from ..toy import prepare_toy
from ..train.config import load_config
from ..train.loop import fit, start_process


def _run_train_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    if config.profile == "toy" and not config.own_data_only:  # the toy world, made once, and the toy SAM checked
        process = start_process(config.device)
        if process.main:
            prepare_toy(config.data_root, config.sam_checkpoint)
        if process.world > 1:
            dist.barrier()
    result = fit(config, resume=args.resume, force=args.force)
    if result.checkpoint is not None:
        print(f"{result.steps} steps in {result.seconds:.0f} s; run folder: {result.output_dir}; HQ-SAM checkpoint: "
              f"{result.checkpoint}")
        if result.validation is not None:
            print(result.validation.round(1).to_string())
    return 0


def add_train_command(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train HQ-SAM's added parts (SAM frozen); one process, or many under torchrun",
        description="Train HQ-SAM. Multi-GPU: torchrun --nproc_per_node=8 -m hqsam train --config paper",
    )
    parser.add_argument("--config", default="toy", help="toy, paper, or a YAML file (default: toy)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. epochs=2")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoints/last.pth")
    parser.add_argument("--force", action="store_true",
                        help="replace a run of other settings in OUTPUT_DIR (default: a run of other settings in the "
                             "profile's folder makes this one go to a folder of its own; elsewhere it is an error)")
    parser.set_defaults(func=_run_train_command)
    return parser
