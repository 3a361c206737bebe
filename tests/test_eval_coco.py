"""COCO evaluation: our metrics against pycocotools run directly and against brute force, and predict_coco on the
toy COCO set against HQSamPredictor box by box."""

import contextlib
import copy
import io
import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import hqsam
from hqsam.toy import generate_toy_coco
from hqsam.cli import main as hqsam_main
from hqsam.decoding import box_logits
from hqsam.eval.coco import (
    TABLE_COLUMNS,
    BoundaryCOCOeval,
    boundary_ap,
    coco_metrics,
    encode_masks,
    evaluate_coco,
    predict_coco,
    write_results,
)
from hqsam.data.sources import read_image
from hqsam.metrics import boundary_iou, mask_iou

THRESHOLDS = np.linspace(0.5, 0.95, 10)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy_coco(tmp_path_factory):
    return generate_toy_coco(tmp_path_factory.mktemp("coco"), num_images=6)


@pytest.fixture(scope="module")
def gt_annotations(toy_coco):
    return json.loads((toy_coco / "instances.json").read_text())


def quiet_coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def rle(mask: np.ndarray) -> dict:
    return encode_masks(mask[None])[0]


def decode(segmentation: dict) -> np.ndarray:
    return mask_utils.decode(segmentation).astype(bool)


def pycocotools_stats(dataset: dict, results: list, iou_type: str, image_ids) -> np.ndarray:
    """COCO.loadRes + COCOeval exactly as pycocotools' own demo runs them."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = quiet_coco(dataset)
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iouType=iou_type)
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = np.asarray(evaluator.stats[:6])
    return np.where(stats == -1, np.nan, stats * 100)


# ------------------------------------------------------------------------------------------------------ metrics


def test_perfect_predictions_score_100(toy_coco, gt_annotations):
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                "score": 1.0} for a in gt_annotations["annotations"]]
    for metrics in (coco_metrics(toy_coco / "instances.json", results),
                    boundary_ap(toy_coco / "instances.json", results),
                    boundary_ap(toy_coco / "instances.json", results, dilation_ratio=0.01)):
        values = np.array(list(metrics.values()))
        assert not np.isnan(values[:3]).any()
        np.testing.assert_allclose(values[~np.isnan(values)], 100.0)


def test_coco_metrics_equal_pycocotools_on_perturbed_predictions(gt_annotations):
    rng = np.random.default_rng(0)
    images = {image["id"]: image for image in gt_annotations["images"]}
    kernel = np.ones((3, 3), np.uint8)
    results = []
    for annotation in gt_annotations["annotations"]:
        mask = decode(annotation["segmentation"]).astype(np.uint8)
        kind = rng.integers(0, 5)
        if kind == 0:
            continue  # missed
        steps = int(rng.integers(1, 4))
        if kind == 1:
            mask = cv2.erode(mask, kernel, iterations=steps)
        elif kind == 2:
            mask = cv2.dilate(mask, kernel, iterations=steps)
        elif kind == 3:
            mask = np.roll(mask, (steps * 2, -steps), axis=(0, 1))
        results.append({"image_id": annotation["image_id"], "category_id": annotation["category_id"],
                        "segmentation": rle(mask.astype(bool)), "score": float(rng.random())})
    for image_id, image in images.items():  # false positives, some of the right category
        for _ in range(2):
            mask = np.zeros((image["height"], image["width"]), bool)
            y, x = rng.integers(0, image["height"] - 40), rng.integers(0, image["width"] - 40)
            mask[y : y + int(rng.integers(5, 40)), x : x + int(rng.integers(5, 40))] = True
            results.append({"image_id": image_id, "category_id": int(rng.integers(1, 5)),
                            "segmentation": rle(mask), "score": float(rng.random())})
    original = copy.deepcopy(results)
    image_ids = [1, 2, 4, 5]

    ours = coco_metrics(quiet_coco(gt_annotations), results, image_ids=image_ids)
    reference = pycocotools_stats(gt_annotations, results, "segm", image_ids)
    np.testing.assert_allclose(list(ours.values()), reference, equal_nan=True)
    assert 0 < ours["AP"] < 100 and 0 < ours["AP50"] < 100  # the perturbations matter
    assert results == original  # the caller's results are not modified (loadRes adds keys)

    with_boxes = [dict(r, bbox=mask_utils.toBbox(r["segmentation"]).tolist()) for r in results]
    ours_bbox = coco_metrics(quiet_coco(gt_annotations), with_boxes, iou_type="bbox", image_ids=image_ids)
    np.testing.assert_allclose(list(ours_bbox.values()), pycocotools_stats(gt_annotations, with_boxes, "bbox",
                                                                           image_ids), equal_nan=True)
    all_images = coco_metrics(quiet_coco(gt_annotations), results)
    np.testing.assert_allclose(list(all_images.values()),
                               pycocotools_stats(gt_annotations, results, "segm", sorted(images)), equal_nan=True)


def handmade_set():
    """Two images, three GT objects of category 1 plus one crowd region, five detections."""
    a = np.zeros((60, 80), bool)
    a[10:40, 10:40] = True
    b = np.zeros((60, 80), bool)
    b[20:55, 45:75] = True
    yy, xx = np.mgrid[:50, :50]
    c = (yy - 28) ** 2 + (xx - 25) ** 2 <= 15**2
    crowd = np.zeros((50, 50), bool)
    crowd[0:10] = True
    gt = [(1, a, 0), (1, b, 0), (2, c, 0), (2, crowd, 1)]
    dataset = {
        "images": [{"id": 1, "height": 60, "width": 80, "file_name": "1.jpg"},
                   {"id": 2, "height": 50, "width": 50, "file_name": "2.jpg"}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": i + 1, "image_id": image_id, "category_id": 1, "segmentation": rle(mask),
                         "area": int(mask.sum()), "bbox": mask_utils.toBbox(rle(mask)).tolist(), "iscrowd": crowded}
                        for i, (image_id, mask, crowded) in enumerate(gt)],
    }
    ring_b = b & ~cv2.erode(b.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    box = np.zeros((60, 80), bool)
    box[10:55, 10:75] = True
    in_crowd = np.zeros((50, 50), bool)
    in_crowd[2:8, 10:40] = True
    detections = [(1, np.roll(a, 2, axis=1), 0.9), (1, ring_b, 0.8), (1, box, 0.3),
                  (2, cv2.dilate(c.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool), 0.7),
                  (2, in_crowd, 0.5)]
    results = [{"image_id": image_id, "category_id": 1, "segmentation": rle(mask), "score": score}
               for image_id, mask, score in detections]
    return dataset, gt, detections, results


@pytest.mark.parametrize("dilation_ratio", [0.02, 0.01])
def test_boundary_ious_equal_brute_force(dilation_ratio):
    dataset, gt, detections, results = handmade_set()
    coco_gt = quiet_coco(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = BoundaryCOCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), dilation_ratio)
        evaluator.evaluate()
    bound_by_band = bound_by_mask = 0
    for image_id in (1, 2):
        gts = [(mask, crowded) for i, mask, crowded in gt if i == image_id]
        dts = sorted([(mask, score) for i, mask, score in detections if i == image_id], key=lambda d: -d[1])
        expected = np.zeros((len(dts), len(gts)))
        for row, (pred, _) in enumerate(dts):
            for column, (truth, crowded) in enumerate(gts):
                if crowded:  # COCO's crowd IoU: the part of the detection inside the region
                    expected[row, column] = (pred & truth).sum() / pred.sum()
                else:
                    band, area = boundary_iou(truth, pred, dilation_ratio), mask_iou(truth, pred)
                    expected[row, column] = min(band, area)
                    bound_by_band += band < area
                    bound_by_mask += area < band
        np.testing.assert_allclose(evaluator.ious[(image_id, 1)], expected, atol=1e-12)
    assert bound_by_band and bound_by_mask  # both parts of the minimum decide some pair
    assert evaluator.ious[(2, 1)][1, 1] == 1.0  # the detection inside the crowd region


def test_boundary_ap_hand_worked():
    """One 60 x 60 square GT in a 100 x 100 image and one detection, the square moved 1 px right.

    Mask IoU = 59 / 61 = 0.967. With dilation 0.02: d = round(0.02 * 141.4) = 3; each band is a 3 px ring of
    60^2 - 54^2 = 684 pixels; they share 2 x 3 x 59 (top and bottom) + 2 x 2 x 54 (sides) = 570, so the band IoU
    is 570 / 798 = 0.714: matched at thresholds 0.50-0.70 (5 of 10), so AP_B = 50, AP_B50 = 100, AP_B75 = 0,
    while mask AP = 100. Strict (0.01, d = 1): 1 px rings of 236, sharing 118: 1/3, below every threshold.
    """
    square = np.zeros((100, 100), bool)
    square[20:80, 20:80] = True
    moved = np.roll(square, 1, axis=1)
    dataset = {"images": [{"id": 7, "height": 100, "width": 100, "file_name": "7.jpg"}],
               "categories": [{"id": 3, "name": "square"}],
               "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "segmentation": rle(square), "area": 3600,
                                "bbox": [20, 20, 60, 60], "iscrowd": 0}]}
    results = [{"image_id": 7, "category_id": 3, "segmentation": rle(moved), "score": 0.4}]
    assert boundary_iou(square, moved) == pytest.approx(570 / 798)
    assert boundary_iou(square, moved, 0.01) == pytest.approx(1 / 3)

    masks = coco_metrics(quiet_coco(dataset), results)
    assert [masks["AP"], masks["AP50"], masks["AP75"]] == pytest.approx([100, 100, 100])
    boundary = boundary_ap(quiet_coco(dataset), results)
    assert [boundary[k] for k in ("AP_B", "AP_B50", "AP_B75", "AP_B_M")] == pytest.approx([50, 100, 0, 50])
    assert np.isnan(boundary["AP_B_S"]) and np.isnan(boundary["AP_B_L"])  # an area of 3600 is medium
    strict = boundary_ap(quiet_coco(dataset), results, dilation_ratio=0.01)
    assert (strict["AP_B"], strict["AP_B50"]) == (0, 0)


def test_boundary_ap_medium_range_uses_gt_area():
    """S/M/L come from the GT's `area` field, not from the band: a GT marked small counts under AP_B_S only."""
    dataset, _, _, results = handmade_set()
    for annotation in dataset["annotations"]:
        annotation["area"] = 100.0  # below 32^2: small
    boundary = boundary_ap(quiet_coco(dataset), results)
    assert np.isnan(boundary["AP_B_M"]) and np.isnan(boundary["AP_B_L"]) and not np.isnan(boundary["AP_B_S"])


def test_empty_results_and_bad_results(toy_coco, gt_annotations):
    for metrics in (coco_metrics(toy_coco / "instances.json", []),
                    boundary_ap(toy_coco / "instances.json", [], image_ids=[1, 2])):
        values = np.array(list(metrics.values()))
        assert (values[:3] == 0).all() and (np.isnan(values) | (values == 0)).all()  # NaN: no GT of that size
    good = {"image_id": 1, "category_id": 1, "score": 0.5,
            "segmentation": next(a["segmentation"] for a in gt_annotations["annotations"] if a["image_id"] == 1)}
    with pytest.raises(ValueError, match="image_id 999"):
        coco_metrics(toy_coco / "instances.json", [dict(good, image_id=999)])
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        boundary_ap(toy_coco / "instances.json", [dict(good, segmentation=rle(np.zeros((5, 5), bool)))])
    with pytest.raises(ValueError, match="no image to evaluate"):
        coco_metrics(toy_coco / "instances.json", [good], image_ids=[])
    with pytest.raises(ValueError, match="not in the GT"):
        coco_metrics(toy_coco / "instances.json", [good], image_ids=[1, 77])


# --------------------------------------------------------------------------------------------------- prediction


def with_bad_detections(toy_coco):
    detections = json.loads((toy_coco / "detections.json").read_text())
    bad = [
        {"image_id": 999, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 20], "score": 0.9},
        {"image_id": 2, "category_id": 2, "bbox": [10, 10, 20, -3], "score": 0.9},
        {"image_id": 2, "category_id": 2, "score": 0.9},
        {"image_id": 3, "category_id": 42, "bbox": [10, 10, 20, 20], "score": 0.9},
        {"image_id": 3, "category_id": 1, "bbox": [5000, 10, 20, 20], "score": 0.9},
    ]
    expected_skips = {"unknown image id": 1, "invalid box": 2, "malformed detection": 1, "unknown category id": 1,
                      "box outside the image": 1}
    return detections, detections[:5] + bad + detections[5:], expected_skips


@pytest.fixture(scope="module")
def toy_predictions(toy_coco, toy_model):
    _, detections, _ = with_bad_detections(toy_coco)
    return predict_coco(toy_model, toy_coco / "images", toy_coco / "instances.json", detections, images_per_pass=4,
                        progress=False)


def test_predict_coco_results_and_skip_report(toy_coco, toy_predictions, tmp_path):
    valid, _, expected_skips = with_bad_detections(toy_coco)
    valid = sorted(valid, key=lambda d: d["image_id"])  # stable: per image in file order
    assert toy_predictions.skipped.counts == expected_skips
    assert all(toy_predictions.skipped.examples[reason] for reason in expected_skips)
    assert toy_predictions.image_ids == [1, 2, 3, 4, 5, 6] and not toy_predictions.skipped.images
    for name in ("SAM", "HQ-SAM"):
        results = toy_predictions.results[name]
        assert [(r["image_id"], r["category_id"], r["score"]) for r in results] == [
            (d["image_id"], d["category_id"], d["score"]) for d in valid
        ]
        path = write_results(tmp_path / f"{name}.json", results)
        with contextlib.redirect_stdout(io.StringIO()):
            loaded = COCO(str(toy_coco / "instances.json")).loadRes(str(path))
        assert len(loaded.anns) == len(valid)
    sam = [decode(r["segmentation"]) for r in toy_predictions.results["SAM"]]
    hq = [decode(r["segmentation"]) for r in toy_predictions.results["HQ-SAM"]]
    assert any((s != h).any() for s, h in zip(sam, hq))  # two models, not one twice


def test_batched_masks_equal_predictor_box_by_box(toy_coco, toy_model, toy_predictions, gt_annotations):
    coco = quiet_coco(gt_annotations)
    image_ids = [1, 2, 3]
    images = [read_image(toy_coco / "images" / coco.imgs[i]["file_name"]) for i in image_ids]
    results = {name: [r for r in toy_predictions.results[name] if r["image_id"] in image_ids]
               for name in ("SAM", "HQ-SAM")}
    detections = json.loads((toy_coco / "detections.json").read_text())
    boxes = [np.array([[x, y, x + w, y + h] for d in detections if d["image_id"] == i for x, y, w, h in [d["bbox"]]])
             for i in image_ids]
    batched = [{name: result.upsampled(toy_model, name)[:, 0] for name in result.decoded}
               for result in box_logits(toy_model, images, boxes, images_per_pass=2)]
    predictor = hqsam.HQSamPredictor(toy_model)
    index = {"SAM": 0, "HQ-SAM": 0}
    for image, image_boxes, logits in zip(images, boxes, batched):
        predictor.set_image(image)
        for k, box in enumerate(image_boxes):
            model_box = predictor.transform.apply_boxes_torch(torch.as_tensor(box[None], dtype=torch.float),
                                                              image.shape[:2])
            single = {
                "SAM": predictor.predict_sam_torch(None, None, model_box, multimask_output=False,
                                                   return_logits=True)[0][0, 0],
                "HQ-SAM": predictor.predict_torch(None, None, model_box, multimask_output=False, return_logits=True,
                                                  hq_token_only=False)[0][0, 0],
            }
            for name in ("SAM", "HQ-SAM"):
                torch.testing.assert_close(logits[name][k], single[name], atol=1e-4, rtol=0)
                mask = decode(results[name][index[name]]["segmentation"])
                decided = single[name].abs() > 1e-4
                assert np.array_equal(mask[decided.numpy()], (single[name] > 0)[decided].numpy())
                index[name] += 1
    assert index["SAM"] == len(results["SAM"])


def test_oracle_prompts_are_the_gt_boxes(toy_coco, toy_model, gt_annotations):
    oracle = predict_coco(toy_model, toy_coco / "images", toy_coco / "instances.json", None, oracle=True,
                          max_images=3, progress=False)
    gt_boxes = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                for a in gt_annotations["annotations"] if a["image_id"] <= 3]
    as_detections = predict_coco(toy_model, toy_coco / "images", toy_coco / "instances.json", gt_boxes,
                                 max_images=3, progress=False)
    assert oracle.image_ids == [1, 2, 3] and oracle.skipped.total == 0
    assert len(oracle.results["HQ-SAM"]) == len(gt_boxes)
    assert oracle.results == as_detections.results
    assert {r["score"] for r in oracle.results["SAM"]} == {1.0}


def test_missing_image_and_bad_detection_files(toy_coco, toy_model, tmp_path):
    copy_root = tmp_path / "toy_coco"
    shutil.copytree(toy_coco, copy_root)
    (copy_root / "images" / "000000000002.jpg").unlink()
    detections = json.loads((toy_coco / "detections.json").read_text())
    on_image_2 = sum(d["image_id"] == 2 for d in detections)
    predictions = predict_coco(toy_model, copy_root / "images", copy_root / "instances.json",
                               copy_root / "detections.json", models=("SAM",), max_images=3, progress=False)
    assert predictions.image_ids == [1, 3]
    assert "does not exist" in predictions.skipped.images[2]
    assert predictions.skipped.counts == {"image not evaluated": on_image_2}
    assert {r["image_id"] for r in predictions.results["SAM"]} == {1, 3}

    (copy_root / "empty.json").write_text("")
    (copy_root / "none.json").write_text("[]")
    arguments = (toy_model, copy_root / "images", copy_root / "instances.json")
    with pytest.raises(ValueError, match="is empty"):
        predict_coco(*arguments, copy_root / "empty.json", progress=False)
    with pytest.raises(ValueError, match="holds no detections"):
        predict_coco(*arguments, copy_root / "none.json", progress=False)
    with pytest.raises(ValueError, match="instances file"):
        predict_coco(*arguments, copy_root / "instances.json", progress=False)
    with pytest.raises(FileNotFoundError, match="focalnet_dino_val2017.json does not exist.*oracle=True"):
        predict_coco(*arguments, copy_root / "focalnet_dino_val2017.json", progress=False)
    with pytest.raises(ValueError, match="not both"):
        predict_coco(*arguments, detections, oracle=True, progress=False)
    with pytest.raises(ValueError, match="models"):
        predict_coco(*arguments, detections, models=("SAM2",), progress=False)


def test_evaluate_coco_writes_outputs_and_cli(toy_coco, toy_model, toy_checkpoint, tmp_path):
    table = evaluate_coco(toy_model, toy_coco / "images", toy_coco / "instances.json", toy_coco / "detections.json",
                          output_dir=tmp_path / "run", max_images=2, progress=False)
    assert list(table.index) == ["SAM", "HQ-SAM"] and tuple(table.columns) == TABLE_COLUMNS
    for name, file_name in (("SAM", "sam_segm_results.json"), ("HQ-SAM", "hq-sam_segm_results.json")):
        results = json.loads((tmp_path / "run" / file_name).read_text())
        assert coco_metrics(toy_coco / "instances.json", results, image_ids=[1, 2])["AP"] == pytest.approx(
            table.loc[name, "AP"], nan_ok=True)
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("model,AP,AP50")

    common = ["eval", "coco", "--checkpoint", str(toy_checkpoint), "--images", str(toy_coco / "images"), "--annotations",
              str(toy_coco / "instances.json"), "--max-images", "2", "--no-progress", "--device", "cpu"]
    assert hqsam_main(common + ["--oracle", "--output", str(tmp_path / "cli")]) == 0
    assert json.loads((tmp_path / "cli" / "skipped.json").read_text())["image_ids"] == [1, 2]
    assert hqsam_main(common + ["--detections", str(tmp_path / "nothing.json")]) == 2


def test_an_interrupted_prediction_resumes_from_its_journal(toy_coco, toy_model, monkeypatch, tmp_path):
    import hqsam.eval.coco.predict as coco_module

    arguments = (toy_model, toy_coco / "images", toy_coco / "instances.json", toy_coco / "detections.json")
    whole = predict_coco(*arguments, images_per_pass=2, progress=False)
    journal = tmp_path / "predictions.jsonl"
    predict_coco(*arguments, images_per_pass=2, progress=False, journal=journal)
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + len(whole.image_ids)  # the settings, then one line per image
    journal.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])  # cut off mid-write

    encoded = []
    real = coco_module.box_logits
    monkeypatch.setattr(coco_module, "box_logits", lambda model, images, *rest, **options: (
        encoded.append(len(images)), real(model, images, *rest, **options))[1])
    resumed = predict_coco(*arguments, images_per_pass=2, progress=False, journal=journal)
    assert resumed.results == whole.results and resumed.image_ids == whole.image_ids
    assert sum(encoded) == len(whole.image_ids) - 2  # the two whole lines were not predicted again
    assert len(journal.read_text().splitlines()) == 1 + len(whole.image_ids)

    encoded.clear()
    other = predict_coco(*arguments, images_per_pass=2, progress=False, journal=journal, hq_token_only=True)
    assert sum(encoded) == len(whole.image_ids)  # other settings: the journal is not reused
    assert other.results["SAM"] == whole.results["SAM"] and other.results["HQ-SAM"] != whole.results["HQ-SAM"]
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join([lines[0], "{broken", *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match="line 2 is damaged"):
        predict_coco(*arguments, images_per_pass=2, progress=False, journal=journal, hq_token_only=True)
