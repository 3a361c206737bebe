"""Speed of boundary IoU: NumPy per image, batched torch (CPU, and CUDA when present), and the OpenCV reference.

The OpenCV reference is the authors' procedure (zero pad, cv2.erode d times with a 3x3 kernel, subtract), run
in a loop when cv2 is importable. Every method must give the same scores; the speed-ups over the NumPy loop
are measured in this one run (median of --repeats).

    python benchmarks/boundary_iou.py --count 64 --size 1024 --repeats 3
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from hqsam.metrics import boundary_dilation, boundary_iou, boundary_iou_torch


def make_masks(count: int, size: int, seed: int = 0):
    """Smooth random blobs (gt) and shifted, lightly corrupted copies of them (pred), count x size x size bool."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, 16, 16, generator=generator)
    gt = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0] > 0.5
    pred = torch.roll(gt, shifts=(3, -2), dims=(1, 2)) ^ (torch.rand(gt.shape, generator=generator) < 0.001)
    return gt.numpy(), pred.numpy()


def opencv_boundary_iou(cv2, gt: np.ndarray, pred: np.ndarray, dilation_ratio: float) -> float:
    height, width = gt.shape
    dilation = boundary_dilation(height, width, dilation_ratio)
    kernel = np.ones((3, 3), dtype=np.uint8)

    def band(mask: np.ndarray) -> np.ndarray:
        padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        eroded = cv2.erode(padded, kernel, iterations=dilation)[1 : height + 1, 1 : width + 1]
        return mask.astype(np.uint8) - eroded

    gt_band, pred_band = band(gt), band(pred)
    union = np.count_nonzero(gt_band | pred_band)
    return 1.0 if union == 0 else np.count_nonzero(gt_band & pred_band) / union


def median_seconds(run: Callable[[], List[float]], repeats: int, cuda: bool) -> Dict:
    run()  # warm-up (allocator, CUDA context, kernels)
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        scores = run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=64, help="masks per batch")
    parser.add_argument("--size", type=int, default=1024, help="masks are size x size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dilation-ratio", type=float, default=0.02)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gts, preds = make_masks(args.count, args.size)
    ratio = args.dilation_ratio

    methods: Dict[str, Callable[[], List[float]]] = {
        "numpy loop": lambda: [boundary_iou(g, p, ratio) for g, p in zip(gts, preds)],
    }
    gt_tensor, pred_tensor = torch.from_numpy(gts), torch.from_numpy(preds)
    methods[f"torch batch, cpu ({torch.get_num_threads()} threads)"] = lambda: boundary_iou_torch(
        gt_tensor, pred_tensor, ratio
    ).tolist()
    if torch.cuda.is_available():
        gt_cuda, pred_cuda = gt_tensor.cuda(), pred_tensor.cuda()
        methods[f"torch batch, {torch.cuda.get_device_name()}"] = lambda: boundary_iou_torch(
            gt_cuda, pred_cuda, ratio
        ).tolist()
    try:
        import cv2

        methods[f"opencv reference loop ({cv2.getNumThreads()} threads)"] = lambda: [
            opencv_boundary_iou(cv2, g, p, ratio) for g, p in zip(gts, preds)
        ]
    except ImportError:
        print("cv2 is not importable: the OpenCV reference is left out")

    results = {
        name: median_seconds(run, args.repeats, cuda=name.startswith("torch batch") and "cpu" not in name)
        for name, run in methods.items()
    }
    reference_scores = results["numpy loop"]["scores"]
    disagreeing = [name for name, result in results.items() if result["scores"] != reference_scores]
    numpy_seconds = results["numpy loop"]["seconds"]

    print(
        f"boundary IoU of {args.count} mask pairs of {args.size}x{args.size} "
        f"(d = {boundary_dilation(args.size, args.size, ratio)} px), median of {args.repeats} runs"
    )
    print(f"  {'method':<44} {'total s':>9} {'ms/mask':>9} {'speed-up vs numpy':>18}")
    for name, result in results.items():
        seconds = result["seconds"]
        print(f"  {name:<44} {seconds:9.3f} {seconds / args.count * 1000:9.2f} {numpy_seconds / seconds:17.2f}x")
    print(f"  mean boundary IoU {statistics.mean(reference_scores):.4f}; all methods give identical scores: "
          f"{'yes' if not disagreeing else 'NO, differ: ' + ', '.join(disagreeing)}")
    if args.json:
        figures = {
            "count": args.count,
            "size": args.size,
            "dilation_ratio": ratio,
            "repeats": args.repeats,
            "seconds": {name: result["seconds"] for name, result in results.items()},
            "identical_scores": not disagreeing,
        }
        directory = os.path.dirname(os.path.abspath(args.json))
        with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as file:
            json.dump(figures, file, indent=2)
        os.replace(file.name, args.json)
    if disagreeing:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
