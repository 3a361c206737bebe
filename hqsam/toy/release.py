"""The released toy SAM: the toy profile's stand-in for Meta's SAM checkpoint, trained once and shipped in the package.

Meta's SAM is a released file with a known SHA-256 that HQ-SAM's training and evaluation take as given; the toy SAM
is the same for the toy profile. `hqsam/toy/sam_toy.pth` holds its weights (SAM keys only), `sam_toy.json` its
record (the file's SHA-256, the exact command, settings and seed, the toy world it was trained on, the training
time, the provenance of `train_toy_sam`), `sam_toy.losses.csv` its per-step losses. `make toy-sam` (this module's
`main`) makes all three again: the toy world at its default sizes and the scenes, then `train_toy_sam` with
RELEASE_SETTINGS. Everything else only reads the file, through `released_toy_sam`, which checks its digest.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence, Union

from .. import provenance
from ..io import atomic_write
from ..data.layout import TOY_LAYOUT
from ..data.sources import missing_sources
from ..profiles import QUICK_DIR, TOY_SAM
from .sam import loss_log_path, train_toy_sam
from .world import generate_toy_scenes, generate_toy_world

PathLike = Union[str, Path]

COMMAND = "make toy-sam"
RELEASE_SETTINGS = {"steps": 4000, "batch_size": 8, "coarse_size": 32, "lr": 5e-4, "seed": 0}
RELEASE_WORLD = {"seed": 0, "num_train": 600, "num_val": 40, "num_scenes": 300}
QUICK_SETTINGS = {"steps": 2, "batch_size": 2}
QUICK_WORLD = {"num_train": 4, "num_val": 1, "num_scenes": 2}
QUICK_OUTPUT = Path(QUICK_DIR) / "toy_sam" / TOY_SAM.name  # quick releases never replace the shipped file


class ReleaseError(RuntimeError):
    """The shipped toy SAM is missing or is not the file its record describes."""


def record_path(checkpoint: PathLike) -> Path:
    """The record beside a released checkpoint: sam_toy.pth -> sam_toy.json."""
    return Path(checkpoint).with_suffix(".json")


def read_record(checkpoint: PathLike = TOY_SAM) -> dict:
    """The record of the released toy SAM at `checkpoint` (see the module docstring)."""
    record = record_path(checkpoint)
    if not record.is_file():
        raise ReleaseError(f"the toy SAM's record {record} is missing: restore it (git checkout {record.name}) or "
                           f"make the toy SAM again with `{COMMAND}`")
    return json.loads(record.read_text())


def released_toy_sam(checkpoint: PathLike = TOY_SAM) -> Path:
    """The released toy SAM's path, after checking that the file is the one its record names (by SHA-256)."""
    checkpoint = Path(checkpoint)
    record = read_record(checkpoint)
    if not checkpoint.is_file():
        raise ReleaseError(f"the toy SAM {checkpoint} is missing: restore it (git checkout) or make it "
                           f"again with `{COMMAND}`")
    found = provenance.file_sha256(checkpoint)
    if found != record["sha256"]:
        raise ReleaseError(f"the toy SAM {checkpoint} has SHA-256 {found[:12]}…, its record says "
                           f"{record['sha256'][:12]}…: restore the file with git checkout, or make both again with "
                           f"`{COMMAND}`")
    return checkpoint


def prepare_toy(data_root: PathLike, sam_checkpoint: PathLike) -> None:
    """The toy profile's inputs for `hqsam train --config toy`: the toy world (default sizes) if it is missing, and
    the released toy SAM checked by its digest when it is the SAM asked for."""
    if missing_sources(data_root, TOY_LAYOUT):
        generate_toy_world(data_root)
    if Path(sam_checkpoint).resolve() == TOY_SAM:
        released_toy_sam()


def release_toy_sam(data_root: PathLike, output: PathLike = TOY_SAM, quick: bool = False,
                    progress: bool = True) -> Path:
    """Make the toy world under `data_root` (RELEASE_WORLD's sizes, QUICK_WORLD's when `quick`), train the toy SAM
    on it with RELEASE_SETTINGS (QUICK_SETTINGS' steps and batch when `quick`: a check that the command works),
    and write the checkpoint `output` with its record and loss log beside it; returns `output`.

    The three files are made in a temporary folder and each moved into place in one rename, the record last, so an
    interrupted run leaves the old record, which then rejects a new checkpoint by its digest."""
    world = {**RELEASE_WORLD, **(QUICK_WORLD if quick else {})}
    settings = {**RELEASE_SETTINGS, **(QUICK_SETTINGS if quick else {})}
    generate_toy_world(data_root, seed=world["seed"], num_train=world["num_train"], num_val=world["num_val"])
    scenes = generate_toy_scenes(data_root, seed=world["seed"], num_images=world["num_scenes"])
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".release-") as folder:
        trained = Path(folder) / output.name
        started = time.perf_counter()
        train_toy_sam(data_root, trained, progress=progress, scenes=scenes, **settings)
        publish(trained, output, settings, world, time.perf_counter() - started, quick)
    if progress:
        record = read_record(output)
        print(f"toy SAM released: {output} (SHA-256 {record['sha256']}, {settings['steps']} steps in "
              f"{record['seconds']:.0f} s on {record['provenance']['made_by']['machine']}); record: "
              f"{record_path(output)}")
    return output


def publish(trained: PathLike, output: PathLike, settings: dict, world: dict, seconds: float,
            quick: bool = False) -> Path:
    """Move `train_toy_sam`'s checkpoint `trained` (and its loss log) to `output` and write its record (its provenance
    sidecar is folded into the record); returns `output`."""
    trained, output = Path(trained), Path(output)
    record = {"file": output.name, "sha256": provenance.file_sha256(trained),
              "command": COMMAND + (" QUICK=1" if quick else ""), "settings": settings, "world": world,
              "seconds": round(seconds, 1), "provenance": provenance.read_provenance(trained)}
    loss_log_path(trained).replace(loss_log_path(output))
    trained.replace(output)
    provenance.sidecar(trained).unlink()
    with atomic_write(record_path(output), "w") as file:
        json.dump(record, file, indent=1)
    return output


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hqsam.toy.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None,
                        help="where the toy world is made (default: a temporary folder, removed afterwards)")
    parser.add_argument("--output", default=None,
                        help=f"the checkpoint to write (default: {TOY_SAM}; with --quick: {QUICK_OUTPUT})")
    parser.add_argument("--quick", action="store_true",
                        help=f"a tiny world and {QUICK_SETTINGS['steps']} steps: checks the command, releases "
                             "nothing worth using")
    args = parser.parse_args(argv)
    args.output = args.output or (QUICK_OUTPUT if args.quick else TOY_SAM)
    if args.data_root is not None:
        release_toy_sam(args.data_root, args.output, args.quick)
        return 0
    folder = tempfile.mkdtemp(prefix="hqsam-toy-world-")
    try:
        release_toy_sam(folder, args.output, args.quick)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
