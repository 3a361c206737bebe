"""Training throughput: our batched step against a re-creation of the release's per-image decoding loop.

Both steps see the same prepared batches (data loading excluded), the same frozen model and the same loss; they
differ only in how the decoder runs. The release's step (its train.py): the frozen encoder on the batch, then
SAM's own prompt encoder and mask decoder image by image, masks upsampled to the input size and thresholded
(Sam.forward, whose masks training never uses), then
the HQ decoder image by image with gradients. Ours: the encoder on the batch (`--precision`, fp32 as the release by default), prompts embedded
per prompt shape, one batched decoder pass per shape. The two are timed alternately; the ratio of medians is
printed, and on CUDA the peak GPU memory of each step.

    python benchmarks/train_throughput.py --model-type toy --batch-size 16 --repeats 5
    python benchmarks/train_throughput.py --model-type vit_l --batch-size 4 --loss-points 12544 --device cuda
"""

import argparse
import functools
import json
import statistics
import tempfile
import time

import numpy as np
import torch

import hqsam
from hqsam.data import TOY_LAYOUT, read_layout
from hqsam.decoding import PRECISIONS
from hqsam.eval.speed import device_description
from hqsam.profiles import resolve_device
from hqsam.seeding import keyed_generator
from hqsam.toy import generate_toy_world
from hqsam.train.examples import LOSS_STREAM, TrainingExamples, collate
from hqsam.train.head import HQLogits, embed_prompts, encode_frozen
from hqsam.train.loss import mask_loss
from torch.utils.data import ConcatDataset


def release_style_logits(model: hqsam.HQSam, batch: dict) -> torch.Tensor:
    """HQ logits the way the release computes them in training: per image, after a wasted SAM decode."""
    decoder, image_pe = model.mask_decoder, model.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        # its train.py hands Sam.forward one uint8 image per sample, which preprocesses them one by one
        images = batch["image"].permute(0, 2, 3, 1).cpu().numpy()
        inputs = [torch.as_tensor(image.astype(np.uint8), device=model.device).permute(2, 0, 1) for image in images]
        embeddings, early = model.encode_image(torch.stack([model.preprocess(x) for x in inputs]))
        prompts = []
        for i in range(len(batch["kind"])):
            one = {k: v[i : i + 1] for k, v in batch.items()}
            (_, sparse, dense), = embed_prompts(model, one)
            output = decoder.predict_masks_hq(embeddings[i : i + 1], image_pe, sparse, dense, None)
            low_res, _ = output.sam(multimask_output=False)
            size = batch["image"].shape[-2:]
            model.postprocess_masks(low_res, size, size) > model.mask_threshold
            prompts.append((sparse, dense))
    hq_features = decoder.hq_features(embeddings, early)
    logits = [
        decoder.predict_masks_hq(embeddings[i : i + 1], image_pe, sparse, dense, hq_features[i : i + 1]).hq_mask
        for i, (sparse, dense) in enumerate(prompts)
    ]
    return torch.cat(logits)


def our_logits(model: hqsam.HQSam, batch: dict, precision: str = "fp32") -> torch.Tensor:
    embeddings, early = encode_frozen(model, batch["image"].to(model.device), precision)
    return HQLogits(model)(embeddings, early, embed_prompts(model, batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-type", default="toy", choices=sorted(hqsam.MODEL_SPECS))
    parser.add_argument("--batch-size", type=int, default=16, help="per process (the toy config's global batch)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loss-points", type=int, default=784)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda[:N]")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="our step's frozen encoder")
    parser.add_argument("--data-root", help="a toy world (generated in a temporary folder if not given)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    device = torch.device(resolve_device(args.device))

    model = hqsam.build_hqsam(args.model_type).to(device)
    root = args.data_root or generate_toy_world(tempfile.mkdtemp(), num_train=args.batch_size, num_val=0)
    size = model.image_encoder.img_size
    examples = TrainingExamples(
        ConcatDataset(read_layout(root, TOY_LAYOUT, split="train")), size, tuple(model.prompt_encoder.mask_input_size),
        seed=0, scale_range=(0.1, 2.0), flip_prob=0.5, prompt_kinds=("box", "point", "noise_mask"), num_points=10,
    )
    batches = [collate([examples[(epoch, i % len(examples))] for i in range(args.batch_size)]) for epoch in range(2)]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    methods = {"ours": functools.partial(our_logits, precision=args.precision), "release": release_style_logits}
    peak = {name: 0 for name in methods}

    def step(method: str, batch) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        logits = methods[method](model, batch)
        generators = [keyed_generator(0, 0, i, LOSS_STREAM) for i in batch["index"].tolist()]
        bce, dice = mask_loss(logits, batch["target"].to(device), generators, num_points=args.loss_points)
        optimizer.zero_grad(set_to_none=True)
        (bce + dice).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak[method] = max(peak[method], torch.cuda.max_memory_allocated(device))
        return time.perf_counter() - start

    if device.type == "cpu" and args.precision == "fp32":  # the same numbers as the release's fp32 step
        batch = {**batches[0], "image": batches[0]["image"].round()}  # the release casts images to uint8
        torch.testing.assert_close(our_logits(model, batch), release_style_logits(model, batch), atol=1e-4, rtol=0)
    for batch in batches:  # warm-up
        step("ours", batch), step("release", batch)
    times = {"ours": [], "release": []}
    for repeat in range(args.repeats):
        batch = batches[repeat % len(batches)]
        times["ours"].append(step("ours", batch))
        times["release"].append(step("release", batch))
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model_type": args.model_type,
        "device": device_description(device),
        "batch_size": args.batch_size,
        "precision": args.precision,
        "ours_samples_per_s": args.batch_size / median["ours"],
        "release_samples_per_s": args.batch_size / median["release"],
        "speedup": median["release"] / median["ours"],
        "peak_memory_gb": {k: v / 2**30 for k, v in peak.items()} if device.type == "cuda" else None,
    }
    print(f"{args.model_type} at {size} px, batch {args.batch_size}, on {result['device']}; median of {args.repeats}")
    print(f"  release-style per-image step: {result['release_samples_per_s']:8.1f} samples/s")
    print(f"  our batched step            : {result['ours_samples_per_s']:8.1f} samples/s")
    print(f"  speed-up: {result['speedup']:.2f}x (target >= 2x on CPU with the toy config)")
    if result["peak_memory_gb"] is not None:
        print("  peak GPU memory per process: " + ", ".join(f"{k} {v:.1f} GB" for k, v in result["peak_memory_gb"].items()))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
