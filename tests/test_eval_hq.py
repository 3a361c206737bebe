"""The HQ benchmark protocol end to end on a small toy world: per-image rows, summaries, resume, sharding over
processes, the encoder's precision, the CLI."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import hqsam
from hqsam import provenance
from conftest import randomize_
from hqsam.cli import main
from hqsam.data import TOY_LAYOUT, read_layout
from hqsam.eval import evaluate_box_noise, evaluate_hq_datasets, evaluate_points, summarize
from hqsam.decoding import box_logits
from hqsam.eval.hq_benchmark import shard_chunks
from hqsam.metrics import boundary_iou, mask_iou
from hqsam.toy import generate_toy_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_toy_world(tmp_path_factory.mktemp("toy"), num_train=0, num_val=3)


@pytest.fixture(scope="module")
def model():
    return randomize_(hqsam.build_hqsam("toy"), seed=11)


def test_rows_follow_the_protocol(world, model):
    """Recompute one image by hand: resize to S x S, tight box, one encoder pass, upsample logits, > 0."""
    sources = read_layout(world, TOY_LAYOUT, split="val")
    rows = evaluate_hq_datasets(model, sources, progress=False)
    assert len(rows) == 4 * 3 * 2 and set(rows["model"]) == {"SAM", "HQ-SAM"}
    sample = sources[2][1]
    size = model.image_encoder.img_size
    image = F.interpolate(torch.from_numpy(sample.image).permute(2, 0, 1)[None].float(), (size, size), mode="bilinear")
    gt = F.interpolate(torch.from_numpy(sample.mask)[None, None].float(), (size, size), mode="bilinear")[0, 0] > 0.5
    ys, xs = np.nonzero(gt.numpy())
    with torch.no_grad():
        embeddings, early = model.encode_image(model.preprocess(image))
        box = torch.tensor([[xs.min(), ys.min(), xs.max(), ys.max()]], dtype=torch.float)
        sparse, dense = model.prompt_encoder(points=None, boxes=box, masks=None)
        low_res, _ = model.mask_decoder(
            embeddings, model.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=False, hq_token_only=True,
            hq_features=model.mask_decoder.hq_features(embeddings, early),
        )
    pred = (F.interpolate(low_res, size=sample.mask.shape, mode="bilinear", align_corners=False)[0, 0] > 0).numpy()
    one_by_one = evaluate_hq_datasets(model, [sources[2]], max_images=2, images_per_pass=1, progress=False)
    row = one_by_one[(one_by_one["image"] == sample.name) & (one_by_one["model"] == "HQ-SAM")].iloc[0]
    assert row["iou"] == pytest.approx(mask_iou(sample.mask, pred), abs=1e-6)
    assert row["biou"] == pytest.approx(boundary_iou(sample.mask, pred), abs=1e-6)
    summary = summarize(rows)
    per_dataset = rows[rows["model"] == "SAM"].groupby("dataset")["biou"].mean() * 100
    assert summary.loc["SAM", "average mBIoU"] == pytest.approx(per_dataset.mean())


def test_interrupted_evaluation_resumes_without_redoing_images(world, model, tmp_path, monkeypatch):
    sources = read_layout(world, TOY_LAYOUT, split="val")  # 4 sets of 3 images: one chunk each
    rows_file = tmp_path / "rows.csv"
    full = evaluate_hq_datasets(model, sources, progress=False)
    original, calls = hqsam.eval.hq_benchmark._score_chunk, []

    def interrupted(m, d, c, *more):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the third chunk never finishes
        calls.append(len(c))
        return original(m, d, c, *more)

    monkeypatch.setattr(hqsam.eval.hq_benchmark, "_score_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_hq_datasets(model, sources, progress=False, rows_file=rows_file)
    assert pd.read_csv(rows_file)["dataset"].nunique() == 2 and provenance.read_provenance(rows_file)["done"] == {
        sources[0].name: 3, sources[1].name: 3}
    calls.clear()
    monkeypatch.setattr(hqsam.eval.hq_benchmark, "_score_chunk", lambda m, d, c, *more: calls.append(len(c)) or original(m, d, c, *more))
    resumed = evaluate_hq_datasets(model, sources, progress=False, rows_file=rows_file)
    assert sum(calls) == 12 - 6  # the two finished sets were not scored again
    key = ["dataset", "image", "model"]
    pd.testing.assert_frame_equal(
        resumed.sort_values(key).reset_index(drop=True), full.sort_values(key).reset_index(drop=True), check_dtype=False
    )
    pd.read_csv(rows_file).iloc[:5].to_csv(rows_file, index=False)  # rows lost behind the record's back
    calls.clear()
    evaluate_hq_datasets(model, sources, progress=False, rows_file=rows_file)
    assert sum(calls) == 12  # not trusted: scored again


def test_shards_score_every_image_once_in_its_single_process_chunk():
    images = [range(0, 7), range(2, 5), range(0, 0), range(0, 1)]  # per source; the second resumed at image 2
    single = shard_chunks(images, 3, (0, 1))
    assert [chunk[1:] for chunk in single] == [(0, 0, 3), (0, 3, 6), (0, 6, 7), (1, 2, 5), (3, 0, 1)]
    everything = Counter((source, i) for source, todo in enumerate(images) for i in todo)
    for world in (2, 3, 7):
        shards = [shard_chunks(images, 3, (rank, world)) for rank in range(world)]
        assert sorted(chunk for shard in shards for chunk in shard) == single  # the same chunks, each on one rank
        scored = Counter((source, i) for shard in shards for _, source, first, end in shard for i in range(first, end))
        assert scored == everything
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_sharding_refuses_bad_shards_and_a_rows_file(world, model, tmp_path):
    sources = read_layout(world, TOY_LAYOUT, split="val")
    with pytest.raises(ValueError, match="0 <= rank < world"):
        evaluate_hq_datasets(model, sources, shard=(2, 2), progress=False)
    with pytest.raises(ValueError, match="rows_file .* single process"):
        evaluate_hq_datasets(model, sources, shard=(0, 2), rows_file=tmp_path / "rows.csv", progress=False)


def test_precision_reaches_the_encoder_of_every_evaluation(world, model, monkeypatch):
    """HQ benchmark, box noise and points, COCO and the predictor's batches (`box_logits`): one encoder helper
    (`hqsam.decoding.encode_pixels`), one keyword."""
    seen = []
    real = hqsam.decoding.encode_pixels

    def spy(model, pixels, precision="fp32"):
        seen.append(precision)
        return real(model, pixels, precision)

    monkeypatch.setattr(hqsam.decoding, "encode_pixels", spy)
    sources = read_layout(world, TOY_LAYOUT, split="val")[:1]
    evaluate_hq_datasets(model, sources, max_images=1, progress=False, precision="bf16")
    evaluate_box_noise(model, sources, scales=(0.0,), max_images=1, progress=False, precision="bf16")
    evaluate_points(model, sources, settings=((1, 0),), max_images=1, progress=False, precision="bf16")
    image = sources[0][0].image
    list(box_logits(model, [image], [np.array([[2.0, 2.0, 30.0, 30.0]])], precision="bf16"))
    assert seen == ["bf16"] * 4
    evaluate_hq_datasets(model, sources, max_images=1, progress=False)
    assert seen[-1] == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        evaluate_hq_datasets(model, sources, max_images=1, progress=False, precision="half")


def test_cli_writes_rows_and_summary(world, model, tmp_path, capsys):
    checkpoint = hqsam.save_state_dict(model.state_dict(), tmp_path / "sam_hq_toy.pth")
    code = main(["eval", "hq", "--checkpoint", str(checkpoint), "--data-root", str(world), "--layout", "toy",
                 "--output", str(tmp_path / "out"), "--max-images", "2", "--no-progress"])
    assert code == 0
    rows = pd.read_csv(tmp_path / "out" / "hq_rows.csv")
    assert len(rows) == 4 * 2 * 2
    summary = pd.read_csv(tmp_path / "out" / "hq_summary.csv", index_col=0)
    assert list(summary.index) == ["SAM", "HQ-SAM"] and "Toy-Thin mBIoU" in summary.columns
    assert "average mBIoU" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["hq", "box-noise", "points", "coco"])
def test_cli_reports_bad_input_in_one_line(world, tmp_path, capsys, protocol):
    missing = tmp_path / "sam_hq_missing.pth"
    arguments = ["eval", protocol, "--checkpoint", str(missing), "--device", "cpu"]
    if protocol == "coco":
        arguments += ["--images", str(tmp_path), "--annotations", str(tmp_path / "instances.json"), "--oracle"]
    else:
        arguments += ["--data-root", str(world), "--layout", "toy", "--output", str(tmp_path / "out")]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {missing} does not exist") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
