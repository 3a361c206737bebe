"""Numerical parity with the authors' `segment_anything_hq` (HQ-SAM) and Meta's `segment_anything` (SAM)."""

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything_hq import SamPredictor as ReleasePredictor

import hqsam
from conftest import build_release, randomize_

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def release_predictor(toy_checkpoint, image) -> ReleasePredictor:
    predictor = ReleasePredictor(build_release(hqsam.MODEL_SPECS["toy"], toy_checkpoint))
    predictor.set_image(image)
    return predictor


PROMPTS = {
    "box": dict(box=np.array([40, 30, 220, 170])),
    "points": dict(point_coords=np.array([[100, 80], [150, 120], [30, 20]]), point_labels=np.array([1, 1, 0])),
    "box+points": dict(
        box=np.array([40, 30, 220, 170]), point_coords=np.array([[100, 80]]), point_labels=np.array([0])
    ),
    "mask": dict(mask_input=np.random.default_rng(1).normal(size=(1, 64, 64)).astype(np.float32)),
    "box+mask": dict(
        box=np.array([10, 10, 290, 190]), mask_input=np.random.default_rng(2).normal(size=(1, 64, 64)).astype(np.float32)
    ),
}


def assert_close(ours, theirs):
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        assert np.abs(a.astype(np.float64) - b.astype(np.float64)).max() <= TOLERANCE


@pytest.mark.parametrize("prompt", sorted(PROMPTS))
@pytest.mark.parametrize("multimask_output", [True, False])
@pytest.mark.parametrize("hq_token_only", [True, False])
def test_predict_matches_release(predictor, release_predictor, prompt, multimask_output, hq_token_only):
    arguments = dict(**PROMPTS[prompt], multimask_output=multimask_output, return_logits=True, hq_token_only=hq_token_only)
    assert_close(predictor.predict(**arguments), release_predictor.predict(**arguments))


@pytest.mark.parametrize("hq_token_only", [True, False])
def test_predict_torch_many_boxes_matches_release(predictor, release_predictor, image, hq_token_only):
    boxes = np.array([[40, 30, 220, 170], [0, 0, 100, 100], [150, 20, 299, 199], [5, 60, 60, 190]])
    model_boxes = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), image.shape[:2])
    arguments = dict(boxes=model_boxes, multimask_output=False, return_logits=True, hq_token_only=hq_token_only)
    ours = predictor.predict_torch(None, None, **arguments)
    theirs = release_predictor.predict_torch(None, None, **arguments)
    assert_close([t.numpy() for t in ours], [t.numpy() for t in theirs])


@pytest.mark.parametrize("hq_token_only", [True, False])
def test_model_forward_matches_release(toy_model, toy_checkpoint, image, hq_token_only):
    release_model = build_release(hqsam.MODEL_SPECS["toy"], toy_checkpoint)
    predictor = hqsam.HQSamPredictor(toy_model)
    resized = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)
    boxes = predictor.transform.apply_boxes_torch(torch.tensor([[40.0, 30, 220, 170], [0, 0, 50, 80]]), image.shape[:2])
    batch = [
        dict(image=resized, original_size=image.shape[:2], boxes=boxes),
        dict(image=resized.flip(-1), original_size=image.shape[:2], boxes=boxes[:1]),
    ]
    ours = toy_model(batch, multimask_output=True, hq_token_only=hq_token_only)
    theirs = release_model(batch, multimask_output=True, hq_token_only=hq_token_only)
    for a, b in zip(ours, theirs):
        for key in ("iou_predictions", "low_res_logits"):
            assert (a[key] - b[key]).abs().max() <= TOLERANCE
        assert (a["masks"] != b["masks"]).float().mean() < 1e-4  # thresholded: only ties at 0 may differ


def test_predict_batch_equals_one_image_at_a_time(toy_model, image):
    images = [image, image[:120, :90], np.ascontiguousarray(image[::-1])]
    boxes = [np.array([[40, 30, 220, 170], [0, 0, 100, 100]]), np.array([[10, 10, 80, 110]]), np.array([[5, 5, 290, 190]])]
    batched = hqsam.HQSamPredictor(toy_model).predict_batch(images, boxes, return_logits=True, images_per_pass=2)
    single = hqsam.HQSamPredictor(toy_model)
    for one_image, its_boxes, result in zip(images, boxes, batched):
        single.set_image(one_image)
        for k, box in enumerate(its_boxes):
            expected = single.predict(box=box, multimask_output=False, return_logits=True)
            assert_close([r[k] for r in result], expected)


@pytest.mark.parametrize("multimask_output", [True, False])
@pytest.mark.parametrize("prompt", ["box", "points", "box+mask"])
def test_predict_sam_matches_meta(predictor, toy_model, image, prompt, multimask_output):
    sam = hqsam.build_sam("toy")
    sam.load_state_dict({k: v for k, v in toy_model.state_dict().items() if not hqsam.is_hq_parameter(k)})
    meta = SamPredictor(sam)
    meta.set_image(image)
    arguments = dict(**PROMPTS[prompt], multimask_output=multimask_output, return_logits=True)
    assert_close(predictor.predict_sam(**arguments), meta.predict(**arguments))


@pytest.fixture(scope="module")
def vit_b_pair(tmp_path_factory):
    model = randomize_(hqsam.build_hqsam("vit_b"), seed=3)
    path = hqsam.save_state_dict(model.state_dict(), tmp_path_factory.mktemp("vit_b") / "sam_hq_vit_b.pth")
    return model, build_release(hqsam.MODEL_SPECS["vit_b"], str(path))


def test_vit_b_at_1024_matches_release(vit_b_pair):
    """One full-size check: the real ViT-B encoder (early feature from block 2) and 1024-px pipeline."""
    ours, theirs = vit_b_pair
    image = np.random.default_rng(4).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    predictors = [hqsam.HQSamPredictor(ours), ReleasePredictor(theirs)]
    for p in predictors:
        p.set_image(image)
    for hq_token_only in (True, False):
        arguments = dict(box=np.array([100, 80, 500, 400]), multimask_output=False, return_logits=True, hq_token_only=hq_token_only)
        assert_close(*(p.predict(**arguments) for p in predictors))
