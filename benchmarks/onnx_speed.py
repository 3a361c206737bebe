"""The exported image encoder's CPU latency under onnxruntime against PyTorch's, per backbone, on random weights.

Both run the same graph (`hqsam.onnx_export.ImageEncoderOnnx`: normalise and pad, the encoder, the fused HQ
features) on the same resized image, with the same thread count; a few warm-up runs, then the median of N.

    OMP_NUM_THREADS=1 python benchmarks/onnx_speed.py --models toy vit_b vit_tiny --threads 1 --repeats 3
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime
import torch

import hqsam
from hqsam.onnx_export import ImageEncoderOnnx, export_encoder
from hqsam.provenance import machine


def median_seconds(run: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["toy", "vit_b"], choices=sorted(hqsam.MODEL_SPECS))
    parser.add_argument("--threads", type=int, default=1, help="torch's and onnxruntime's intra-op threads")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1

    print(f"{machine()}; {args.threads} thread(s) for both; median of {args.repeats} after {args.warmup} warm-up")
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    print(f"{'model':<10} {'input':>6} {'PyTorch ms':>11} {'onnxruntime ms':>15} {'PyTorch/ort':>12}")
    with tempfile.TemporaryDirectory() as folder:
        for model_type in args.models:
            model = hqsam.build_hqsam(model_type)
            size = model.image_encoder.img_size
            image = np.random.default_rng(0).uniform(0, 255, size=(size, size * 3 // 4, 3)).astype(np.float32)
            path = export_encoder(model, Path(folder) / f"{model_type}_encoder.onnx")
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            encoder, pixels = ImageEncoderOnnx(model).eval(), torch.from_numpy(image)
            with torch.inference_mode():
                torch_s = median_seconds(lambda: encoder(pixels), args.warmup, args.repeats)
            ort_s = median_seconds(lambda: session.run(None, {"image": image}), args.warmup, args.repeats)
            print(f"{model_type:<10} {size:>6} {torch_s * 1000:>11.1f} {ort_s * 1000:>15.1f} {torch_s / ort_s:>12.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
