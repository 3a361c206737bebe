"""`hqsam eval hq|coco|box-noise|points|speed`: the paper's evaluation protocols from the command line."""

import argparse
import sys
import warnings
from pathlib import Path

from ..build import build_hqsam
from ..data.layout import LAYOUTS
from ..data.sources import read_layout
from ..decoding import PRECISIONS
from ..eval.coco import coco_table, predict_coco, write_coco_outputs
from ..eval.coco.predict import journal_in
from ..eval.hq_benchmark import evaluate_hq_datasets, summarize
from ..eval.robustness import evaluate_box_noise, evaluate_points
from ..eval.speed import measure_speed
from ..profiles import PROFILES, get_profile, resolve_device
from ..train.config import load_config


def load_model(args: argparse.Namespace):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        model = build_hqsam(args.model_type, args.checkpoint)
    return model.to(resolve_device(args.device))


def _fill_profile(args: argparse.Namespace) -> None:
    """Paths not given on the command line come from the profile (hqsam.profiles)."""
    backbone = args.model_type if args.profile == "paper" and args.model_type != "auto" else None
    profile = get_profile(args.profile, model_type=backbone)
    defaults = {"layout": profile.layout, "data_root": profile.data_root, "checkpoint": profile.hq_checkpoint,
                "output": profile.results}
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, str(value))
    if args.precision is None:  # the one setting training and evaluation share: the profile's recipe
        args.precision = load_config(args.profile).precision


def _run_hq(args: argparse.Namespace) -> int:
    _fill_profile(args)
    sources = read_layout(args.data_root, LAYOUTS[args.layout], split="val")
    output = Path(args.output)
    rows = evaluate_hq_datasets(
        load_model(args), sources, max_images=args.max_images, hq_token_only=not args.summed,
        progress=args.progress, rows_file=output / "hq_rows.csv", precision=args.precision,
    )
    summary = summarize(rows, datasets=[source.name for source in sources])
    summary.to_csv(output / "hq_summary.csv")
    print(summary.round(1).to_string())
    print(f"per-image rows: {output / 'hq_rows.csv'}; summary: {output / 'hq_summary.csv'}")
    return 0


def _run_box_noise(args: argparse.Namespace) -> int:
    _fill_profile(args)
    sources = read_layout(args.data_root, LAYOUTS[args.layout], split="val")
    rows = evaluate_box_noise(
        load_model(args), sources, scales=tuple(args.scales), seed=args.seed, max_images=args.max_images,
        progress=args.progress, precision=args.precision,
    )
    return _save_study(rows, summarize(rows, "noise_scale"), Path(args.output), "box_noise")


def _run_points(args: argparse.Namespace) -> int:
    _fill_profile(args)
    sources = read_layout(args.data_root, LAYOUTS[args.layout], split="val")
    rows = evaluate_points(
        load_model(args), sources, trials=args.trials, seed=args.seed, max_images=args.max_images,
        progress=args.progress, precision=args.precision,
    )
    return _save_study(rows, summarize(rows, ["pos_points", "neg_points"]), Path(args.output), "points")


def _save_study(rows, summary, output: Path, name: str) -> int:
    output.mkdir(parents=True, exist_ok=True)
    rows.to_csv(output / f"{name}_rows.csv", index=False)
    summary.to_csv(output / f"{name}_summary.csv")
    print(summary.round(1).to_string())
    return 0


def _run_speed(args: argparse.Namespace) -> int:
    for model_type in args.model_types:
        result = measure_speed(model_type, device=resolve_device(args.device), repeats=args.repeats)
        print(
            f"{model_type} on {result['device']}: SAM {result['SAM']['fps']:.2f} FPS, HQ-SAM {result['HQ-SAM']['fps']:.2f} "
            f"FPS (ratio {result['HQ-SAM']['fps'] / result['SAM']['fps']:.3f}); learnable "
            f"{result['HQ-SAM']['params_learnable_mb']:.2f} MB of {result['HQ-SAM']['params_total_mb']:.1f} MB"
        )
    return 0


def _add_coco_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of `hqsam eval coco` to `parser` and set its `func`."""
    parser.add_argument("--checkpoint", help="HQ-SAM checkpoint (sam_hq_vit_*.pth); none: random weights")
    parser.add_argument("--model-type", default="auto", help="vit_b, vit_l, vit_h, toy or auto (default: auto)")
    parser.add_argument("--images", required=True, help="image folder, e.g. coco/val2017")
    parser.add_argument("--annotations", required=True, help="instances file, e.g. instances_val2017.json")
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--detections", help="detector boxes in COCO's detection-results JSON format")
    prompts.add_argument("--oracle", action="store_true", help="prompt with the GT boxes instead")
    parser.add_argument("--output", help="folder for the results JSONs, metrics.csv and skipped.json")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N image ids")
    parser.add_argument("--images-per-pass", type=int, default=4, help="images encoded together (default: 4)")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="drop detections scored below this")
    parser.add_argument("--hq-token-only", action="store_true", help="HQ mask alone (paper's COCO: off)")
    parser.add_argument("--dilation-ratio", type=float, default=0.02, help="boundary AP band (0.01: strict)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="the image encoder's (default: fp32)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda[:N]")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=_run_coco_command)
    return parser


def _run_coco_command(args: argparse.Namespace) -> int:
    """Run `hqsam eval coco`; prints the table (and what was skipped)."""
    if args.checkpoint is None:
        if args.model_type == "auto":
            raise ValueError("--model-type auto reads the type from --checkpoint: give one, or a model type")
        print(f"warning: no --checkpoint, {args.model_type} has random weights", file=sys.stderr)
    model = build_hqsam(args.model_type, args.checkpoint).to(resolve_device(args.device))
    predictions = predict_coco(
        model, args.images, args.annotations, None if args.oracle else args.detections,
        hq_token_only=args.hq_token_only, oracle=args.oracle, max_images=args.max_images,
        images_per_pass=args.images_per_pass, score_threshold=args.score_threshold, progress=args.progress,
        journal=journal_in(args.output), precision=args.precision,
    )
    table = coco_table(args.annotations, predictions, args.dilation_ratio)
    if args.output is not None:
        write_coco_outputs(args.output, predictions, table)
    if predictions.skipped.total or predictions.skipped.images:
        print(predictions.skipped, file=sys.stderr)
    print(f"{len(predictions.image_ids)} images")
    print(table.round(1).to_string())
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=PROFILES, default="toy", help="defaults for the paths (hqsam.profiles)")
    parser.add_argument("--checkpoint", default=None, help="HQ-SAM checkpoint (default: the profile's)")
    parser.add_argument("--model-type", default="auto", help="vit_b, vit_l, vit_h, toy or auto (from the weights)")
    parser.add_argument("--output", default=None, help="results folder (default: results/PROFILE)")
    parser.add_argument("--max-images", type=int, default=None, help="per dataset, for quick runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="the image encoder's: fp32 or bf16 (default: the profile's training recipe, fp32)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def add_eval_command(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="evaluate SAM and HQ-SAM with the paper's protocols")
    protocols = parser.add_subparsers(dest="protocol", required=True)
    hq = protocols.add_parser(
        "hq", help="GT-box mIoU and boundary mIoU on the HQ datasets (DIS5K-VD, COIFT, HRSOD, ThinObject5K-TE)",
        description="Resumable: per-image rows are saved as they come and a rerun skips finished images.",
    )
    _common(hq)
    hq.add_argument("--data-root", default=None, help="dataset root (default: the profile's)")
    hq.add_argument("--layout", choices=sorted(LAYOUTS), default=None)
    hq.add_argument("--summed", action="store_true", help="score SAM + HQ logits (hq_token_only=False)")
    hq.set_defaults(func=_run_hq)

    _add_coco_arguments(protocols.add_parser("coco", help="mask AP and boundary AP on COCO with detector boxes"))

    noise = protocols.add_parser("box-noise", help="GT boxes with DN-DETR-style noise (the paper's Table 13)")
    _common(noise)
    noise.add_argument("--data-root", default=None)
    noise.add_argument("--layout", choices=sorted(LAYOUTS), default=None)
    noise.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.2, 0.4])
    noise.add_argument("--seed", type=int, default=0)
    noise.set_defaults(func=_run_box_noise)

    points = protocols.add_parser("points", help="1, 3, 5, 10 positive and 5 negative points (the paper's Figure 5)")
    _common(points)
    points.add_argument("--data-root", default=None)
    points.add_argument("--layout", choices=sorted(LAYOUTS), default=None)
    points.add_argument("--trials", type=int, default=3)
    points.add_argument("--seed", type=int, default=0)
    points.set_defaults(func=_run_points)

    speed = protocols.add_parser("speed", help="FPS of SAM and HQ-SAM and parameter sizes (Tables 1 and 10)")
    speed.add_argument("model_types", nargs="*", default=["toy"], metavar="MODEL_TYPE")
    speed.add_argument("--repeats", type=int, default=5)
    speed.add_argument("--device", default="auto")
    speed.set_defaults(func=_run_speed)
    return parser
