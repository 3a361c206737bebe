"""Which candidates per point let HQ-SAM's "segment everything" find more objects: "release" or "refined".

`HQSamAutomaticMaskGenerator` (hq_token_only False) runs on the toy COCO val images with the toy-trained HQ-SAM
(the released toy SAM plus the trained HQ parts), once per candidates value. A GT instance is found when its
best-matching generated mask has mask IoU >= 0.5 (also reported: >= 0.75). Printed per value: masks per image, the
instances found (recall, pooled over images) and the mean best IoU over instances; and the gains of "refined" over
"release" in image-mean recall at 0.5 and image-mean best IoU, with paired bootstrap intervals over images
(`hqsam.report.paired_bootstrap`).
Meta's thresholds (pred_iou_thresh 0.88, stability_score_thresh 0.95) are first tried on a few images: the toy
SAM's predicted IoUs stay below ~0.4, so they keep almost nothing, and the measured runs use the given thresholds
(default: none, box NMS only; and predicted IoU 0.1 with stability 0.5).

    python benchmarks/amg_candidates.py --points-per-side 16 --max-images 20 --thresholds 0:0 0.1:0.5
"""

import argparse
import json
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import pandas as pd
import torch
from pycocotools import mask as mask_utils

import hqsam
from hqsam.automatic_mask_generator import HQSamAutomaticMaskGenerator
from hqsam.data.sources import read_image
from hqsam.eval.coco.boundary_ap import as_coco
from hqsam.eval.speed import device_description
from hqsam.profiles import get_profile, resolve_device
from hqsam.provenance import machine
from hqsam.report import paired_bootstrap
from hqsam.report.uncertainty import interval_level

MODES = ("release", "refined")
META_THRESHOLDS = dict(pred_iou_thresh=0.88, stability_score_thresh=0.95)
FOUND_AT = (0.5, 0.75)
BOOTSTRAPPED = {"mIoU": "recall@0.5", "mBIoU": "best IoU"}  # what paired_bootstrap's two metrics carry here


def best_ious(records: list, gt_rles: list) -> np.ndarray:
    """Per GT instance, the IoU of its best-matching generated mask (0 without masks)."""
    if not records:
        return np.zeros(len(gt_rles))
    ious = mask_utils.iou([record["segmentation"] for record in records], gt_rles, [0] * len(gt_rles))
    return np.asarray(ious).reshape(len(records), len(gt_rles)).max(axis=0)


def thresholds_pair(text: str) -> Tuple[float, float]:
    try:
        pred_iou_thresh, stability_score_thresh = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a setting is IOU:STABILITY, e.g. 0.1:0.5, got {text!r}") from None
    return pred_iou_thresh, stability_score_thresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profile = get_profile("toy")
    parser.add_argument("--checkpoint", default=str(profile.hq_checkpoint), help="the toy-trained HQ-SAM export")
    parser.add_argument("--points-per-side", type=int, default=16, help="16: about every 10 px of a toy image")
    parser.add_argument("--thresholds", nargs="+", type=thresholds_pair, default=[(0.0, 0.0), (0.1, 0.5)],
                        metavar="IOU:STABILITY", help="pred_iou_thresh:stability_score_thresh settings to measure")
    parser.add_argument("--max-images", type=int, default=20, help="the first N val images (0: all)")
    parser.add_argument("--probe-images", type=int, default=3, help="images Meta's thresholds are tried on")
    parser.add_argument("--device", default="cpu", help="auto (cuda if available), cpu or cuda[:N]")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    device = torch.device(resolve_device(args.device))
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise SystemExit(f"no trained toy HQ-SAM at {checkpoint}: `hqsam train --config toy` makes one")
    if not profile.coco_annotations.is_file():
        raise SystemExit(f"no toy COCO set at {profile.coco_root}: hqsam.toy.generate_toy_coco({profile.data_root})")
    model = hqsam.build_hqsam("toy", checkpoint).to(device)
    coco = as_coco(profile.coco_annotations)
    annotated = [i for i in sorted(coco.getImgIds()) if coco.getAnnIds(imgIds=i, iscrowd=False)]
    image_ids = annotated[: args.max_images or None]
    images = [read_image(profile.coco_images / coco.imgs[i]["file_name"]) for i in image_ids]
    gts = [[coco.annToRLE(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=i, iscrowd=False))] for i in image_ids]
    grid = dict(points_per_side=args.points_per_side, output_mode="coco_rle")

    probe = {mode: sum(len(HQSamAutomaticMaskGenerator(model, candidates=mode, **grid, **META_THRESHOLDS)
                           .generate(image)) for image in images[: args.probe_images])
             for mode in MODES}
    rows = []
    for pred_iou_thresh, stability_score_thresh in args.thresholds:
        for mode in MODES:
            generator = HQSamAutomaticMaskGenerator(model, candidates=mode, pred_iou_thresh=pred_iou_thresh,
                                                    stability_score_thresh=stability_score_thresh, **grid)
            for image_id, image, gt in zip(image_ids, images, gts):
                records = generator.generate(image)
                best = best_ious(records, gt)
                rows.append({"thresholds": f"{pred_iou_thresh:g}/{stability_score_thresh:g}", "image": image_id,
                             "model": mode, "masks": len(records), "instances": len(gt), "best_iou_sum": best.sum(),
                             **{f"found@{t}": int((best >= t).sum()) for t in FOUND_AT}})
    rows = pd.DataFrame(rows)
    # paired_bootstrap resamples images for both modes alike; its two metric columns carry the image's recall at 0.5
    # and its mean best IoU.
    per_image = rows.assign(dataset="toy_coco", iou=rows["found@0.5"] / rows["instances"],
                            biou=rows["best_iou_sum"] / rows["instances"])
    intervals = paired_bootstrap(per_image, by="thresholds", baseline="release", model="refined")
    seconds = time.perf_counter() - start

    totals = rows.groupby(["thresholds", "model"], sort=False).sum(numeric_only=True)
    table = pd.DataFrame({
        "masks/image": totals["masks"] / len(image_ids),
        **{f"recall@{t} (%)": 100 * totals[f"found@{t}"] / totals["instances"] for t in FOUND_AT},
        "found@0.5": [f"{n}/{k}" for n, k in zip(totals["found@0.5"], totals["instances"])],
        "mean best IoU (%)": 100 * totals["best_iou_sum"] / totals["instances"],
    })
    print(f"toy-trained HQ-SAM {checkpoint}, toy COCO val: {len(image_ids)} images, "
          f"{sum(len(gt) for gt in gts)} instances; {args.points_per_side} x {args.points_per_side} points")
    print(f"Meta's thresholds ({META_THRESHOLDS}) on the first {args.probe_images} images: "
          + ", ".join(f"{mode} {n} masks" for mode, n in probe.items()))
    print("thresholds: pred_iou_thresh/stability_score_thresh; other settings Meta's defaults")
    print(table.round(1).to_string())
    gains = {}
    for setting in dict.fromkeys(rows["thresholds"]):
        for metric, label in BOOTSTRAPPED.items():
            row = intervals.loc[(setting, "toy_coco", metric)]
            gains[f"{setting} {label}"] = {k: float(row[k]) for k in ("gain", "gain low", "gain high")}
            print(f"{setting}: refined - release, image-mean {label}: {row['gain']:+.1f} points "
                  f"[{row['gain low']:+.1f}, {row['gain high']:+.1f}] ({interval_level(intervals)} paired bootstrap "
                  f"over images); images won/tied/lost {row['wins']:.0f}/{row['ties']:.0f}/{row['losses']:.0f}")
    print(f"elapsed {seconds:.0f} s on {machine()}, torch {device_description(device)}")
    if args.json:
        figures = {"images": len(image_ids), "points_per_side": args.points_per_side,
                   "meta_thresholds_masks": probe, "table": table.reset_index().to_dict(orient="records"),
                   "gains": gains, "seconds": seconds, "machine": machine(), "device": device_description(device)}
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
