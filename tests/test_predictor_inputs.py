"""Bad or unusual input: documented conversions give the same result as the canonical input; the rest raise
clear errors from our code."""

import numpy as np
import pytest
import torch

import hqsam

BOX = np.array([40, 30, 220, 170])


def logits(predictor, image, **kwargs):
    predictor.set_image(image, **kwargs)
    return predictor.predict(box=BOX, return_logits=True)[0]


@pytest.fixture()
def fresh(toy_model):
    return hqsam.HQSamPredictor(toy_model)


def test_documented_image_conversions_equal_uint8_rgb(fresh, image):
    reference = logits(fresh, image)
    gray = image[:, :, 0]
    gray_reference = logits(fresh, np.repeat(gray[:, :, None], 3, axis=2))
    assert np.array_equal(logits(fresh, gray), gray_reference)
    assert np.array_equal(logits(fresh, gray[:, :, None]), gray_reference)
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 7, np.uint8)], axis=2)
    assert np.array_equal(logits(fresh, rgba), reference)
    assert np.array_equal(logits(fresh, image.astype(np.uint16) * 257), reference)
    assert np.array_equal(logits(fresh, image.astype(np.float32) / 255.0), reference)
    assert np.array_equal(logits(fresh, image.astype(np.int64)), reference)
    assert np.array_equal(logits(fresh, np.ascontiguousarray(image[:, :, ::-1]), image_format="BGR"), reference)


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.zeros((0, 10, 3), np.uint8), ValueError, "empty"),
        (np.zeros((10, 10, 5), np.uint8), ValueError, "1, 3 or 4 channels"),
        (np.zeros((3, 10, 12), np.uint8), ValueError, "channels-first"),
        (np.zeros((2, 10, 10, 3), np.uint8), ValueError, "H x W x C"),
        (np.full((10, 10, 3), 2.0, np.float32), ValueError, r"\[0, 1\]"),
        (np.full((10, 10, 3), np.nan, np.float32), ValueError, "NaN"),
        (np.full((10, 10, 3), 300, np.int32), ValueError, r"\[0, 255\]"),
        (torch.zeros(10, 10, 3), TypeError, "torch.Tensor"),
    ],
)
def test_bad_images(fresh, bad, error, message):
    with pytest.raises(error, match=message):
        fresh.set_image(bad)


def test_bad_image_format(fresh, image):
    with pytest.raises(ValueError, match="'RGB' or 'BGR'"):
        fresh.set_image(image, image_format="HSV")


def test_predict_before_set_image(fresh):
    with pytest.raises(RuntimeError, match="set_image"):
        fresh.predict(box=BOX)
    with pytest.raises(RuntimeError, match="set_image"):
        fresh.get_image_embedding()


def test_box_partly_outside_is_clipped(predictor, image):
    height, width = image.shape[:2]
    clipped = predictor.predict(box=np.array([0, 0, width, height]), return_logits=True)[0]
    assert np.array_equal(predictor.predict(box=np.array([-50, -20, width + 40, height + 9]), return_logits=True)[0], clipped)


@pytest.mark.parametrize(
    "box, message",
    [
        (np.array([220, 30, 40, 170]), "inverted"),
        (np.array([40, np.nan, 220, 170]), "NaN"),
        (np.array([400, 300, 500, 400]), "entirely outside"),
        (np.array([40, 30, 220]), "one x0, y0, x1, y1 box"),
        (np.array([[40, 30, 220, 170], [0, 0, 5, 5]]), "predict_batch"),
    ],
)
def test_bad_boxes(predictor, box, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(box=box)


@pytest.mark.parametrize(
    "points, message",
    [
        (dict(point_coords=np.array([[10, 10]])), "point_labels"),
        (dict(point_labels=np.array([1])), "point_coords is missing"),
        (dict(point_coords=np.array([[10, 10], [20, 20]]), point_labels=np.array([1])), "one label per point"),
        (dict(point_coords=np.array([10, 10]), point_labels=np.array([1])), "N x 2"),
        (dict(point_coords=np.array([[10, 10]]), point_labels=np.array([2])), "1 \\(foreground\\) or 0"),
        (dict(point_coords=np.array([[np.inf, 10]]), point_labels=np.array([1])), "NaN or infinite"),
    ],
)
def test_bad_points(predictor, points, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(**points)


def test_mask_input_shapes(predictor):
    low_res = predictor.predict(box=BOX)[2]
    assert low_res.shape == (1, 64, 64)
    with_mask = predictor.predict(box=BOX, mask_input=low_res, return_logits=True)[0]
    assert np.array_equal(predictor.predict(box=BOX, mask_input=low_res[0], return_logits=True)[0], with_mask)
    with pytest.raises(ValueError, match="1 x 64 x 64 low-res logits"):
        predictor.predict(box=BOX, mask_input=np.zeros((1, 256, 256), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(box=BOX, mask_input=np.full((1, 64, 64), np.nan, np.float32))


def test_predict_batch_errors(predictor, image):
    with pytest.raises(ValueError, match="2 images but 1 box arrays"):
        predictor.predict_batch([image, image], [BOX[None]])
    with pytest.raises(ValueError, match="K x 4"):
        predictor.predict_batch([image], [BOX])


def test_predictor_needs_an_hq_model():
    with pytest.raises(TypeError, match="build_hqsam"):
        hqsam.HQSamPredictor(hqsam.build_sam("toy"))
