"""Cached-embedding training against on-the-fly training on the toy world: wall time and validation quality.

SAM is frozen, so the encoder's outputs for an (image, augmentation) pair never change. With
`cache_embeddings=true` each image gets `cache_augmentations` fixed augmentations, cycled over the epochs, and the
encoder runs once per pair; prompts and loss points still vary every epoch. Both runs share every other setting.

    python benchmarks/cached_embeddings.py --augmentations 1 [key=value ...]
"""

import argparse
import json
import tempfile
from pathlib import Path

from hqsam.toy import prepare_toy
from hqsam.train import fit, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--augmentations", type=int, default=1, help="fixed augmentations per image in the cached run")
    parser.add_argument("--output", default=None, help="folder for the two runs (default: a temporary one)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="toy config overrides for both runs")
    args = parser.parse_args()
    output = Path(args.output or tempfile.mkdtemp())

    base = load_config("toy", args.overrides)
    prepare_toy(base.data_root, base.sam_checkpoint, progress=base.progress)
    results = {}
    for name, extra in (("on_the_fly", []), ("cached", ["cache_embeddings=true", f"cache_augmentations={args.augmentations}"])):
        config = load_config("toy", [*args.overrides, f"output_dir={output / name}", *extra])
        result = fit(config)
        summary = result.validation
        results[name] = {
            "seconds": result.seconds,
            "hq_miou": float(summary.loc["HQ-SAM", "average mIoU"]),
            "hq_mbiou": float(summary.loc["HQ-SAM", "average mBIoU"]),
            "sam_mbiou": float(summary.loc["SAM", "average mBIoU"]),
        }
    fly, cached = results["on_the_fly"], results["cached"]
    figures = {
        **results,
        "speedup": fly["seconds"] / cached["seconds"],
        "miou_difference": cached["hq_miou"] - fly["hq_miou"],
        "mbiou_difference": cached["hq_mbiou"] - fly["hq_mbiou"],
    }
    print(f"on the fly: {fly['seconds']:.0f} s, HQ-SAM mIoU {fly['hq_miou']:.1f} mBIoU {fly['hq_mbiou']:.1f}")
    print(f"cached ({args.augmentations} augmentation(s) per image): {cached['seconds']:.0f} s, "
          f"HQ-SAM mIoU {cached['hq_miou']:.1f} mBIoU {cached['hq_mbiou']:.1f}")
    print(f"speed-up {figures['speedup']:.2f}x; quality difference (cached - on the fly): "
          f"mIoU {figures['miou_difference']:+.1f}, mBIoU {figures['mbiou_difference']:+.1f} (frozen SAM: mBIoU "
          f"{fly['sam_mbiou']:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
