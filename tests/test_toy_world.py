import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from pycocotools.coco import COCO

from hqsam.data.layout import TOY_LAYOUT
from hqsam.io import MANIFEST
from hqsam.toy import (
    CHARACTERS, COCO_CATEGORIES, draw_toy_object, generate_toy_coco, generate_toy_scenes, generate_toy_world,
)

# pycocotools' own use of numpy 2 (annToMask), not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NUM_TRAIN, NUM_VAL = 4, 8


def files_of(root: Path) -> dict:
    """Relative path -> bytes of every file under root."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def masks_of(root: Path, mask_dir: str) -> list:
    return [np.asarray(Image.open(path)) for path in sorted((root / mask_dir).glob("*.png"))]


def boundary_ratio(mask: np.ndarray) -> float:
    """Pixels of the mask's inner boundary (mask minus its 3x3 erosion, done by PIL) over the mask's area."""
    eroded = np.asarray(Image.fromarray(mask).filter(ImageFilter.MinFilter(3))) > 127
    inside = mask > 127
    return (inside & ~eroded).sum() / inside.sum()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_toy_world(tmp_path_factory.mktemp("world"), seed=0, num_train=NUM_TRAIN, num_val=NUM_VAL)


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory) -> Path:
    return generate_toy_coco(tmp_path_factory.mktemp("coco"), seed=0, num_images=6)


def test_layout_pairs_images_and_masks(world):
    for spec in TOY_LAYOUT:
        images = sorted((world / spec.image_dir).glob(f"*{spec.image_ext}"))
        masks = sorted((world / spec.mask_dir).glob(f"*{spec.mask_ext}"))
        assert len(images) == (NUM_TRAIN if spec.split == "train" else NUM_VAL)
        assert [path.stem for path in images] == [path.stem for path in masks]
        for image_path, mask_path in zip(images, masks):
            image, mask = Image.open(image_path), Image.open(mask_path)
            assert image.mode == "RGB" and mask.mode == "L"
            assert image.size == mask.size
            values = np.unique(np.asarray(mask))
            assert values.tolist() == [0, 255], f"{mask_path.name} has values {values}"
            assert 0.05 <= (np.asarray(mask) == 255).mean() <= 0.6


def test_image_sizes_vary_and_hrsod_is_larger(world):
    sizes = {spec.name: [Image.open(path).size for path in (world / spec.image_dir).iterdir()] for spec in TOY_LAYOUT}
    small = [side for name, spec_sizes in sizes.items() if name != "Toy-HRSOD" for size in spec_sizes for side in size]
    assert 96 <= min(small) and max(small) <= 144  # about the toy model's 128 px input
    assert any(w != h for w, h in sizes["Toy-TR"] + sizes["Toy-DIS"] + sizes["Toy-Thin"])
    hrsod = [side for size in sizes["Toy-HRSOD"] for side in size]
    assert 128 <= min(hrsod) and max(hrsod) <= 176


def test_thin_sets_have_more_boundary_than_hrsod(world):
    dirs = {spec.name: spec.mask_dir for spec in TOY_LAYOUT}
    ratio = {name: np.mean([boundary_ratio(mask) for mask in masks_of(world, dirs[name])]) for name in dirs}
    assert ratio["Toy-Thin"] > 5 * ratio["Toy-HRSOD"], ratio
    assert ratio["Toy-DIS"] > 5 * ratio["Toy-HRSOD"], ratio
    assert ratio["Toy-COIFT"] > ratio["Toy-HRSOD"], ratio


def test_a_fine_mask_grid_holds_the_detail_that_a_coarse_one_smears(world):
    """The point of the world: on the toy model's 64-cell mask grid (its longer side resized to 64 cells and back)
    every character keeps most of its mask, as HQ-SAM's fine masks can; on a 32-cell grid, as the toy SAM's coarse
    training masks are, the thin and dis characters lose far more than the solid hrsod one."""

    def round_trip_iou(mask: np.ndarray, cells: int) -> float:
        image, scale = Image.fromarray(mask), cells / max(mask.shape)
        small = image.resize((max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale))), Image.BOX)
        back = np.asarray(small.resize(image.size, Image.BILINEAR)) > 127
        return (back & (mask > 127)).sum() / (back | (mask > 127)).sum()

    def mean_iou(spec, cells: int) -> float:
        return float(np.mean([round_trip_iou(mask, cells) for mask in masks_of(world, spec.mask_dir)]))

    fine = {spec.name: mean_iou(spec, 64) for spec in TOY_LAYOUT}
    coarse = {spec.name: mean_iou(spec, 32) for spec in TOY_LAYOUT}
    assert min(fine.values()) > 0.8, fine
    assert coarse["Toy-HRSOD"] > 0.9 and coarse["Toy-COIFT"] > 0.85, coarse
    for name in ("Toy-Thin", "Toy-DIS"):
        assert coarse[name] < coarse["Toy-HRSOD"] - 0.15 and fine[name] - coarse[name] > 0.15, (fine, coarse)


def test_deterministic_by_seed(world, tmp_path):
    again = generate_toy_world(tmp_path / "same", seed=0, num_train=NUM_TRAIN, num_val=NUM_VAL)
    assert files_of(again / "toy") == files_of(world / "toy")
    other = files_of(generate_toy_world(tmp_path / "other", seed=1, num_train=NUM_TRAIN, num_val=NUM_VAL) / "toy")
    assert other.keys() == files_of(world / "toy").keys()
    differing = [name for name, data in other.items() if data != files_of(world / "toy")[name]]
    assert len(differing) > 0.9 * len(other)


def test_counts_do_not_change_earlier_images(world, tmp_path):
    fewer = files_of(generate_toy_world(tmp_path, seed=0, num_train=2, num_val=3) / "toy")
    full = files_of(world / "toy")
    images = [name for name in fewer if name != MANIFEST]
    assert len(images) == 2 * (2 + 4 * 3)
    assert all(fewer[name] == full[name] for name in images)


def test_second_call_writes_nothing(world):
    before = {path: path.stat().st_mtime_ns for path in (world / "toy").rglob("*")}
    assert generate_toy_world(world, seed=0, num_train=NUM_TRAIN, num_val=NUM_VAL) == world
    assert {path: path.stat().st_mtime_ns for path in (world / "toy").rglob("*")} == before


def test_other_params_regenerate_without_stale_files(tmp_path):
    generate_toy_world(tmp_path, seed=0, num_train=3, num_val=2)
    generate_toy_world(tmp_path, seed=0, num_train=1, num_val=1)
    manifest = json.loads((tmp_path / "toy" / MANIFEST).read_text())
    assert manifest["params"] == {"seed": 0, "num_train": 1, "num_val": 1}
    for spec in TOY_LAYOUT:
        assert len(list((tmp_path / spec.image_dir).iterdir())) == 1
        assert len(list((tmp_path / spec.mask_dir).iterdir())) == 1
    assert [path.name for path in tmp_path.iterdir()] == ["toy"]  # no staging or retired folders left


def test_missing_files_trigger_regeneration(tmp_path):
    generate_toy_world(tmp_path, seed=0, num_train=2, num_val=1)
    victim = next((tmp_path / "toy" / "train" / "gt").iterdir())
    expected = victim.read_bytes()
    victim.unlink()
    generate_toy_world(tmp_path, seed=0, num_train=2, num_val=1)
    assert victim.read_bytes() == expected


def test_interrupted_run_leaves_nothing_complete(tmp_path, monkeypatch):
    calls = []

    def failing_save(image, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr("hqsam.toy.world._save_image", failing_save)
    with pytest.raises(KeyboardInterrupt):
        generate_toy_world(tmp_path, seed=0, num_train=5, num_val=1)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    generate_toy_world(tmp_path, seed=0, num_train=5, num_val=1)
    assert len(list((tmp_path / "toy" / "train" / "im").iterdir())) == 5


def test_foreign_folder_is_not_replaced_without_overwrite(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "mine.txt").write_text("not generated")
    with pytest.raises(ValueError, match="overwrite=True"):
        generate_toy_world(tmp_path, num_train=1, num_val=1)
    assert (tmp_path / "toy" / "mine.txt").exists()
    generate_toy_world(tmp_path, num_train=1, num_val=1, overwrite=True)
    assert not (tmp_path / "toy" / "mine.txt").exists()
    assert (tmp_path / "toy" / MANIFEST).exists()


@pytest.mark.parametrize("kwargs", [{"seed": -1}, {"num_train": 2.5}, {"num_val": -3}, {"num_train": True}])
def test_bad_arguments_raise(tmp_path, kwargs):
    with pytest.raises(ValueError, match="non-negative integer"):
        generate_toy_world(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_draw_toy_object(tmp_path):
    for character in CHARACTERS:
        image, mask = draw_toy_object(np.random.default_rng(3), 150, 230, character)
        assert image.shape == (150, 230, 3) and image.dtype == np.uint8
        assert mask.shape == (150, 230) and mask.dtype == bool and mask.any()
        # painted from the mask: the object's pixels and the background differ in colour on average
        assert np.abs(image[mask].mean(0) - image[~mask].mean(0)).max() > 10
        again_image, again_mask = draw_toy_object(np.random.default_rng(3), 150, 230, character)
        assert np.array_equal(again_image, image) and np.array_equal(again_mask, mask)
    with pytest.raises(ValueError, match="unknown character"):
        draw_toy_object(np.random.default_rng(0), 200, 200, "coco")
    with pytest.raises(ValueError, match="at least"):
        draw_toy_object(np.random.default_rng(0), 20, 200, "thin")


def test_coco_ground_truth(coco_dir):
    coco = COCO(str(coco_dir / "instances.json"))
    assert {category["name"] for category in coco.loadCats(coco.getCatIds())} == set(COCO_CATEGORIES)
    assert len(coco.getImgIds()) == 6
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        image = Image.open(coco_dir / "images" / info["file_name"])
        assert image.size == (info["width"], info["height"])
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert 2 <= len(annotations) <= 5
        coverage = np.zeros((info["height"], info["width"]), dtype=int)
        for annotation in annotations:
            mask = coco.annToMask(annotation)
            assert annotation["iscrowd"] == 0 and isinstance(annotation["segmentation"]["counts"], str)
            assert mask.sum() == annotation["area"] > 0
            ys, xs = np.nonzero(mask)
            x, y, w, h = annotation["bbox"]
            assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            coverage += mask
        assert coverage.max() == 1, f"masks of image {image_id} overlap"


def test_coco_detections(coco_dir):
    coco = COCO(str(coco_dir / "instances.json"))
    detections = json.loads((coco_dir / "detections.json").read_text())
    assert {d["image_id"] for d in detections} <= set(coco.getImgIds())
    assert {d["category_id"] for d in detections} <= set(coco.getCatIds())
    results = coco.loadRes(str(coco_dir / "detections.json"))  # pycocotools accepts the file as detector output
    assert len(results.getAnnIds()) == len(detections)
    # every confident detection is a jittered ground-truth box: each side within 10% of that box's size
    boxes = {}
    for annotation in coco.dataset["annotations"]:
        boxes.setdefault((annotation["image_id"], annotation["category_id"]), []).append(annotation["bbox"])
    confident = [d for d in detections if d["score"] >= 0.5]
    assert len(confident) >= 0.7 * len(coco.dataset["annotations"])
    for detection in confident:
        x, y, w, h = detection["bbox"]
        assert any(
            abs(x - gx) <= 0.1 * gw + 0.01 and abs(x + w - gx - gw) <= 0.1 * gw + 0.01
            and abs(y - gy) <= 0.1 * gh + 0.01 and abs(y + h - gy - gh) <= 0.1 * gh + 0.01
            for gx, gy, gw, gh in boxes[(detection["image_id"], detection["category_id"])]
        ), detection


def test_coco_deterministic_and_idempotent(coco_dir, tmp_path):
    again = generate_toy_coco(tmp_path, seed=0, num_images=6)
    assert files_of(again) == files_of(coco_dir)
    before = {path: path.stat().st_mtime_ns for path in again.rglob("*")}
    generate_toy_coco(tmp_path, seed=0, num_images=6)
    assert {path: path.stat().st_mtime_ns for path in again.rglob("*")} == before
    other = generate_toy_coco(tmp_path / "other", seed=1, num_images=6)
    assert (other / "instances.json").read_bytes() != (coco_dir / "instances.json").read_bytes()



def test_scenes_are_coco_instances_apart_from_the_evaluation_images(coco_dir, tmp_path):
    from hqsam.data import CocoInstanceSource

    scenes = generate_toy_scenes(tmp_path, seed=0, num_images=6)
    assert scenes == tmp_path / "toy_scenes" and not (scenes / "detections.json").exists()
    source = CocoInstanceSource(scenes / "images", scenes / "instances.json", name="toy-scenes")
    assert len(source) == source.report.usable >= 12 and not source.report.excluded  # 2-5 objects per scene
    evaluation = {path.read_bytes() for path in (coco_dir / "images").iterdir()}
    assert not evaluation & {path.read_bytes() for path in (scenes / "images").iterdir()}
    before = {path: path.stat().st_mtime_ns for path in scenes.rglob("*")}
    generate_toy_scenes(tmp_path, seed=0, num_images=6)
    assert {path: path.stat().st_mtime_ns for path in scenes.rglob("*")} == before
