"""HQ-SAM's added latency over SAM on one image (encoder + decoder, one box), measured in one run.

SAM is Meta's `SamPredictor` on Meta's `Sam`; HQ-SAM is `hqsam.HQSamPredictor` on the same SAM weights. The two
are timed alternately, and the ratio of medians is printed (the paper: 4.8 vs 5.0 FPS for ViT-L on GPU, 4%).

    python benchmarks/latency.py --model-type vit_b --device cpu --repeats 7
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
from segment_anything import SamPredictor

import hqsam
from hqsam.eval.speed import device_description
from hqsam.profiles import resolve_device


def timed(device: torch.device, run) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-type", default="vit_b", choices=sorted(hqsam.MODEL_SPECS))
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda[:N]")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    device = torch.device(resolve_device(args.device))

    model = hqsam.build_hqsam(args.model_type).to(device)
    sam = hqsam.build_sam(args.model_type)
    sam.load_state_dict({k: v for k, v in model.state_dict().items() if not hqsam.is_hq_parameter(k)})
    sam = sam.to(device)
    size = model.image_encoder.img_size
    image = np.random.default_rng(0).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    box = np.array([size * 0.2, size * 0.25, size * 0.7, size * 0.8])
    sam_predictor, hq_predictor = SamPredictor(sam), hqsam.HQSamPredictor(model)

    def run_sam():
        sam_predictor.set_image(image)
        sam_predictor.predict(box=box, multimask_output=False)

    def run_hq():
        hq_predictor.set_image(image)
        hq_predictor.predict(box=box, multimask_output=False, hq_token_only=True)

    def decode_sam():
        sam_predictor.predict(box=box, multimask_output=False)

    def decode_hq():
        hq_predictor._hq_features = None  # count the fusion of the encoder features too, as a new image would
        hq_predictor.predict(box=box, multimask_output=False, hq_token_only=True)

    with torch.inference_mode():
        for _ in range(args.warmup):
            run_sam(), run_hq()
        times = {"sam": [], "hq": [], "sam_decoder": [], "hq_decoder": []}
        for _ in range(args.repeats):
            times["sam"].append(timed(device, run_sam))
            times["hq"].append(timed(device, run_hq))
            times["sam_decoder"].append(timed(device, decode_sam))
            times["hq_decoder"].append(timed(device, decode_hq))
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model_type": args.model_type,
        "device": device_description(device),
        "repeats": args.repeats,
        "sam_s": median["sam"],
        "hq_s": median["hq"],
        "sam_fps": 1 / median["sam"],
        "hq_fps": 1 / median["hq"],
        "added_latency": median["hq"] / median["sam"] - 1,
        "sam_decoder_s": median["sam_decoder"],
        "hq_decoder_and_fusion_s": median["hq_decoder"],
        # the encoder pass is the same code in both, so the decoder-side difference is the steadier estimate
        "added_latency_decoder_side": (median["hq_decoder"] - median["sam_decoder"]) / median["sam"],
    }
    print(f"{args.model_type} at {size} px on {result['device']}, median of {args.repeats} alternating runs")
    print(f"  SAM    : {median['sam'] * 1000:9.1f} ms/image  ({result['sam_fps']:.2f} FPS)")
    print(f"  HQ-SAM : {median['hq'] * 1000:9.1f} ms/image  ({result['hq_fps']:.2f} FPS)")
    print(f"  decoder only: SAM {median['sam_decoder'] * 1000:.1f} ms, HQ-SAM incl. fusion {median['hq_decoder'] * 1000:.1f} ms")
    print(f"  added latency of HQ-SAM: {result['added_latency'] * 100:+.2f}% end to end, "
          f"{result['added_latency_decoder_side'] * 100:+.2f}% from the decoder-side difference "
          "(target <= 2%; paper 4% on GPU)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
