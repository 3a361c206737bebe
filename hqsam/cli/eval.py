"""`hqsam eval hq|coco|box-noise|points|speed`: the paper's evaluation protocols from the command line."""

import argparse
import sys
import warnings
from pathlib import Path
from typing import Sequence

from .. import provenance
from ..build import build_hqsam
from ..data.layout import LAYOUTS
from ..data.sources import read_layout
from ..decoding import PRECISIONS
from ..eval.coco import coco_table, predict_coco, write_coco_outputs
from ..eval.coco.predict import journal_in
from ..eval.coco.run import COCO_FILES, coco_provenance
from ..eval.hq_benchmark import benchmark_provenance, evaluate_hq_datasets, summarize
from ..eval.robustness import box_noise_provenance, evaluate_box_noise, evaluate_points, points_provenance
from ..eval.speed import measure_speed
from ..modeling import DEFAULT_VARIANT, get_variant
from ..profiles import PROFILES, get_profile, resolve_device
from ..train.config import load_config
from ..train.loop import build_sources


def load_model(args: argparse.Namespace):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        model = build_hqsam(args.model_type, args.checkpoint)
    _say_variant(model)
    return model.to(resolve_device(args.device))


def _say_variant(model) -> None:
    """Say which of the paper's ablations a checkpoint holds, if it holds one: its masks are the rows of HQ-SAM."""
    variant = model.mask_decoder.variant
    if variant != DEFAULT_VARIANT:
        _, row = get_variant(variant).paper[0]
        print(f"{model.checkpoint_path} holds the variant {variant} ({row!r}): its masks are the rows of HQ-SAM, "
              "SAM's are the frozen SAM's", file=sys.stderr)


def _fill_profile(args: argparse.Namespace) -> None:
    """Settings not given on the command line come from --config's training run (its export, its precision, an
    eval folder beside it) or else from the profile (hqsam.profiles: its HQ-SAM, recipe and results folder);
    `args.elsewhere` is where results go when that folder holds results of other provenance (None with --output)."""
    backbone = args.model_type if args.profile == "paper" and args.model_type != "auto" else None
    profile = get_profile(args.profile, model_type=backbone)
    args.train_config = load_config(args.config) if getattr(args, "config", None) else None
    if args.train_config is not None:
        run = Path(args.train_config.output_dir)
        defaults = {"checkpoint": run / f"sam_hq_{args.train_config.model_type}.pth", "output": run / "eval"}
        args.elsewhere = run.parent / "eval" if args.output is None else None
    else:
        defaults = {"checkpoint": profile.hq_checkpoint, "output": profile.results}
        args.elsewhere = profile.runs / "eval" if args.output is None else None
    defaults.update(layout=profile.layout, data_root=profile.data_root)
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, str(value))
    if args.precision is None:  # the one setting training and evaluation share: the recipe's
        args.precision = (args.train_config or load_config(args.profile)).precision


def _validation_sources(args: argparse.Namespace) -> list:
    """What `hq`, `box-noise` and `points` evaluate: with --config, the validation sources its training validates
    on (`hqsam.train.loop.build_sources`); else the layout's validation sources under --data-root."""
    if args.train_config is None:
        return read_layout(args.data_root, LAYOUTS[args.layout], split="val")
    sources = build_sources(args.train_config, "val")
    if not sources:
        raise ValueError(f"config {args.config} has no validation sources (val_sources: []): name some in "
                         "val_sources, or evaluate a layout without --config")
    return sources


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """--config, or --data-root and --layout: what the protocol evaluates (`_validation_sources`)."""
    parser.add_argument("--config", default=None, help="a training config (toy, paper or a YAML file): evaluate "
                        "the validation sources its training validates on, instead of --data-root and --layout; "
                        "by default its run's export, at its precision, into OUTPUT_DIR/eval")
    parser.add_argument("--data-root", default=None, help="dataset root (default: the profile's)")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default=None, help="default: the profile's")


def _run_hq(args: argparse.Namespace) -> int:
    _fill_profile(args)
    sources = _validation_sources(args)
    model = load_model(args)
    made = benchmark_provenance(model, sources, args.max_images, not args.summed, precision=args.precision)
    output = _claim_output(args, made, ("hq_rows.csv", "hq_summary.csv"))
    rows = evaluate_hq_datasets(
        model, sources, max_images=args.max_images, hq_token_only=not args.summed,
        progress=args.progress, rows_file=output / "hq_rows.csv", precision=args.precision,
    )
    summary = summarize(rows, datasets=[source.name for source in sources])
    provenance.save_csv(summary, output / "hq_summary.csv")
    print(summary.round(1).to_string())
    _say_written(output / "hq_rows.csv", output / "hq_summary.csv")
    return 0


def _claim_output(args: argparse.Namespace, made: dict, own: Sequence[str]) -> Path:
    """The folder the results go to (`hqsam.provenance.claim_folder`): --output, or the profile's results folder
    unless it holds results of other provenance, then a folder of their own under runs/<profile>/eval/."""
    elsewhere = provenance.own_folders(args.elsewhere, made) if getattr(args, "elsewhere", None) else ()
    return provenance.claim_folder(Path(args.output), made, own, force=args.force, elsewhere=elsewhere)


def _say_written(*paths: Path) -> None:
    model = provenance.read_provenance(paths[0])["scope"]["model"]
    print(f"wrote {', '.join(str(path) for path in paths)} (each with its .provenance.json; weights "
          f"{model['checkpoint'] or 'not from a file'}, SHA-256 {model['sha256'][:16]})")


def _run_box_noise(args: argparse.Namespace) -> int:
    _fill_profile(args)
    sources, model = _validation_sources(args), load_model(args)
    options = dict(scales=tuple(args.scales), seed=args.seed, max_images=args.max_images, precision=args.precision)
    output = _claim_output(args, box_noise_provenance(model, sources, **options), STUDY_FILES["box_noise"])
    rows = evaluate_box_noise(model, sources, progress=args.progress, rows_file=output / "box_noise_rows.csv",
                              **options)
    return _save_summary(summarize(rows, "noise_scale"), output, "box_noise")


def _run_points(args: argparse.Namespace) -> int:
    _fill_profile(args)
    sources, model = _validation_sources(args), load_model(args)
    options = dict(trials=args.trials, seed=args.seed, max_images=args.max_images, precision=args.precision)
    output = _claim_output(args, points_provenance(model, sources, **options), STUDY_FILES["points"])
    rows = evaluate_points(model, sources, progress=args.progress, rows_file=output / "points_rows.csv", **options)
    return _save_summary(summarize(rows, ["pos_points", "neg_points"]), output, "points")


STUDY_FILES = {name: (f"{name}_rows.csv", f"{name}_summary.csv") for name in ("box_noise", "points")}


def _save_summary(summary, output: Path, name: str) -> int:
    rows_file, summary_file = (output / file for file in STUDY_FILES[name])
    provenance.save_csv(summary, summary_file)
    print(summary.round(1).to_string())
    _say_written(rows_file, summary_file)
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
    parser.add_argument("--model-type", default="auto",
                        help="vit_b, vit_l, vit_h, vit_tiny, toy or auto (default: auto)")
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
    parser.add_argument("--force", action="store_true", help="replace results of other provenance in --output")
    parser.set_defaults(func=_run_coco_command)
    return parser


def _run_coco_command(args: argparse.Namespace) -> int:
    """Run `hqsam eval coco`; prints the table (and what was skipped)."""
    if args.checkpoint is None:
        if args.model_type == "auto":
            raise ValueError("--model-type auto reads the type from --checkpoint: give one, or a model type")
        print(f"warning: no --checkpoint, {args.model_type} has random weights", file=sys.stderr)
    model = build_hqsam(args.model_type, args.checkpoint).to(resolve_device(args.device))
    _say_variant(model)
    detections = None if args.oracle else args.detections
    options = dict(hq_token_only=args.hq_token_only, oracle=args.oracle, max_images=args.max_images,
                   images_per_pass=args.images_per_pass, score_threshold=args.score_threshold, precision=args.precision)
    made = coco_provenance(model, args.annotations, detections, args.dilation_ratio, **options)
    if args.output is not None:
        output = provenance.claim_folder(args.output, made, COCO_FILES, force=args.force)
        provenance.write_provenance(journal_in(output).parent, made)
    predictions = predict_coco(model, args.images, args.annotations, detections, progress=args.progress,
                               journal=journal_in(args.output), **options)
    table = coco_table(args.annotations, predictions, args.dilation_ratio)
    if args.output is not None:
        write_coco_outputs(args.output, predictions, table, made)
        print(f"wrote {args.output} (results JSONs, metrics.csv, skipped.json, provenance.json)")
    if predictions.skipped.total or predictions.skipped.images:
        print(predictions.skipped, file=sys.stderr)
    print(f"{len(predictions.image_ids)} images")
    print(table.round(1).to_string())
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=PROFILES, default="toy", help="defaults for the paths (hqsam.profiles)")
    parser.add_argument("--checkpoint", default=None, help="HQ-SAM checkpoint (default: the profile's)")
    parser.add_argument("--model-type", default="auto",
                        help="vit_b, vit_l, vit_h, vit_tiny, toy or auto (from the weights)")
    parser.add_argument("--output", default=None, help="results folder (default: results/PROFILE)")
    parser.add_argument("--max-images", type=int, default=None, help="per dataset, for quick runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="the image encoder's: fp32 or bf16 (default: the profile's training recipe, fp32)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--force", action="store_true",
                        help="replace results of other provenance in the output folder (default: with no --output, "
                             "such results make these go to runs/PROFILE/eval/<weights>-<digest>/; with --output, "
                             "an error)")


def add_eval_command(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="evaluate SAM and HQ-SAM with the paper's protocols")
    protocols = parser.add_subparsers(dest="protocol", required=True)
    hq = protocols.add_parser(
        "hq", help="GT-box mIoU and boundary mIoU on the HQ datasets (DIS5K-VD, COIFT, HRSOD, ThinObject5K-TE)",
        description="Resumable (so are box-noise and points): per-image rows are saved as they come and a rerun of "
                    "the same weights, data and settings skips finished images; results of other provenance are "
                    "never overwritten in silence.",
    )
    _common(hq)
    _add_source_arguments(hq)
    hq.add_argument("--summed", action="store_true", help="score SAM + HQ logits (hq_token_only=False)")
    hq.set_defaults(func=_run_hq)

    _add_coco_arguments(protocols.add_parser("coco", help="mask AP and boundary AP on COCO with detector boxes"))

    noise = protocols.add_parser("box-noise", help="GT boxes with DN-DETR-style noise (the paper's Table 13)")
    _common(noise)
    _add_source_arguments(noise)
    noise.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.2, 0.4])
    noise.add_argument("--seed", type=int, default=0)
    noise.set_defaults(func=_run_box_noise)

    points = protocols.add_parser("points", help="1, 3, 5, 10 positive and 5 negative points (the paper's Figure 5)")
    _common(points)
    _add_source_arguments(points)
    points.add_argument("--trials", type=int, default=3)
    points.add_argument("--seed", type=int, default=0)
    points.set_defaults(func=_run_points)

    speed = protocols.add_parser("speed", help="FPS of SAM and HQ-SAM and parameter sizes (Tables 1 and 10)")
    speed.add_argument("model_types", nargs="*", default=["toy"], metavar="MODEL_TYPE")
    speed.add_argument("--repeats", type=int, default=5)
    speed.add_argument("--device", default="auto")
    speed.set_defaults(func=_run_speed)
    return parser
