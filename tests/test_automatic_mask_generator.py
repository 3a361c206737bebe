"""HQSamAutomaticMaskGenerator against Meta's generator (SAM candidates), the authors' generator (release
candidates) and the authors' decoder (refined and HQ-token-only candidates), record for record."""

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import SamAutomaticMaskGenerator
from segment_anything_hq import SamAutomaticMaskGenerator as ReleaseGenerator
from segment_anything_hq import SamPredictor as ReleasePredictor

import hqsam
from conftest import build_release, randomize_
from hqsam.automatic_mask_generator import HQSamAutomaticMaskGenerator
from hqsam.checkpoint import HQ_MODULES
from hqsam.figures import MASK_COLOURS, masks_figure, overlay
from hqsam.toy import generate_toy_coco
from hqsam.toy.release import TOY_SAM

pytestmark = pytest.mark.usefixtures("one_thread")

# Random weights everywhere give near-whole-image masks that NMS leaves one of, so SAM is the shipped toy SAM (its
# predicted IoUs stay below ~0.4 on the toy world, hence the low thresholds) and the HQ parts are random.
SETTINGS = dict(points_per_side=8, pred_iou_thresh=0.2, stability_score_thresh=0.5)
# The random HQ mask alone is speckle over half the image, which NMS would leave one of: no NMS for it.
HQ_ONLY_SETTINGS = dict(points_per_side=8, pred_iou_thresh=0.2, stability_score_thresh=0.0, box_nms_thresh=1.0)
MIN_RECORDS = 5


@pytest.fixture(scope="module")
def model() -> hqsam.HQSam:
    with pytest.warns(UserWarning, match="plain SAM checkpoint"):
        model = hqsam.build_hqsam("toy", TOY_SAM)
    for seed, name in enumerate(HQ_MODULES):
        randomize_(getattr(model.mask_decoder, name), seed=seed)
    return model


@pytest.fixture(scope="module")
def release_model(model, tmp_path_factory):
    path = hqsam.save_state_dict(model.state_dict(), tmp_path_factory.mktemp("amg") / "sam_hq_toy.pth")
    return build_release(hqsam.MODEL_SPECS["toy"], str(path))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> np.ndarray:
    root = generate_toy_coco(tmp_path_factory.mktemp("coco"), num_images=1)
    return np.asarray(Image.open(next((root / "images").iterdir())).convert("RGB"))


class ReleaseCandidates(ReleasePredictor):
    """The authors' predictor made to give the candidates ours should: the release's own with `hq_token_only`, or
    the three refined ones from the masks of all tokens that the authors' decoder computes."""

    def __init__(self, model, hq_token_only: bool) -> None:
        super().__init__(model)
        self.hq_token_only = hq_token_only

    @torch.no_grad()
    def predict_torch(self, point_coords, point_labels, multimask_output=True, return_logits=False):
        if self.hq_token_only:
            return super().predict_torch(point_coords, point_labels, multimask_output=multimask_output,
                                         return_logits=return_logits, hq_token_only=True)
        sparse, dense = self.model.prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=None)
        decoder = self.model.mask_decoder
        early = self.interm_features[0].permute(0, 3, 1, 2)
        hq_features = decoder.embedding_encoder(self.features) + decoder.compress_vit_feat(early)
        masks, iou = decoder.predict_masks(self.features, self.model.prompt_encoder.get_dense_pe(), sparse, dense,
                                           hq_features)
        low_res = masks[:, 1:4] + masks[:, 4:]  # SAM's three multimask tokens, each plus the HQ token's mask
        return self.model.postprocess_masks(low_res, self.input_size, self.original_size), iou[:, 1:4], low_res


def reference_generator(release_model, hq_token_only: bool = False, **settings) -> ReleaseGenerator:
    generator = ReleaseGenerator(release_model, **settings)
    generator.predictor = ReleaseCandidates(release_model, hq_token_only)
    return generator


def assert_same_records(ours, theirs):
    assert len(ours) == len(theirs) >= MIN_RECORDS
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys() == {"segmentation", "area", "bbox", "predicted_iou", "point_coords",
                                        "stability_score", "crop_box"}
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert np.array_equal(a[key], b[key])
            else:
                assert a[key] == b[key], key


@pytest.mark.parametrize("output_mode, crop_n_layers, min_mask_region_area", [
    ("binary_mask", 0, 0), ("uncompressed_rle", 1, 0), ("coco_rle", 0, 30),
])
def test_sam_candidates_are_metas_generator(model, scene, output_mode, crop_n_layers, min_mask_region_area):
    sam = hqsam.build_sam("toy")
    sam.load_state_dict({k: v for k, v in model.state_dict().items() if not hqsam.is_hq_parameter(k)})
    settings = dict(SETTINGS, output_mode=output_mode, crop_n_layers=crop_n_layers,
                    min_mask_region_area=min_mask_region_area)
    ours = HQSamAutomaticMaskGenerator(model, candidates="sam", **settings).generate(scene)
    assert_same_records(ours, SamAutomaticMaskGenerator(sam, **settings).generate(scene))


@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_release_candidates_are_the_release_generator(model, release_model, scene, crop_n_layers):
    settings = dict(SETTINGS, crop_n_layers=crop_n_layers)
    ours = HQSamAutomaticMaskGenerator(model, candidates="release", **settings).generate(scene)
    assert_same_records(ours, ReleaseGenerator(release_model, **settings).generate(scene))


def test_refined_candidates_are_sams_three_masks_each_plus_the_hq_mask(model, release_model, scene):
    ours = HQSamAutomaticMaskGenerator(model, candidates="refined", **SETTINGS).generate(scene)
    assert_same_records(ours, reference_generator(release_model, **SETTINGS).generate(scene))


@pytest.mark.parametrize("candidates", ["release", "refined"])
def test_hq_token_only_gives_the_hq_mask_alone(model, release_model, scene, candidates):
    settings = HQ_ONLY_SETTINGS
    ours = HQSamAutomaticMaskGenerator(model, candidates=candidates, hq_token_only=True, **settings).generate(scene)
    assert_same_records(ours, reference_generator(release_model, hq_token_only=True, **settings).generate(scene))


def test_refined_best_candidate_is_the_predictors_mask(model, scene):
    """Per point, the refined candidate of highest predicted IoU is `HQSamPredictor.predict_torch`'s mask."""
    generator = HQSamAutomaticMaskGenerator(model, candidates="refined")
    predictor = hqsam.HQSamPredictor(model)
    for p in (generator.predictor, predictor):
        p.set_image(scene)
    points = predictor.transform.apply_coords_torch(torch.tensor([[30.0, 40], [80, 120], [140, 10]]), scene.shape[:2])
    prompts = (points[:, None], torch.ones(len(points), 1, dtype=torch.int))
    masks, iou, low_res = generator.predictor.predict_torch(*prompts, multimask_output=True, return_logits=True)
    assert masks.shape[:2] == iou.shape == (3, 3) and masks.shape[2:] == scene.shape[:2]
    release_masks, release_iou, release_low_res = predictor.predict_torch(*prompts, return_logits=True)
    best = iou.argmax(dim=1)
    assert torch.equal(low_res[torch.arange(3), best], release_low_res[:, 0])
    assert torch.allclose(masks[torch.arange(3), best], release_masks[:, 0], atol=1e-5)  # upsampled 3 or 1 at a time
    assert torch.equal(iou.max(dim=1).values, release_iou[:, 0])


@pytest.mark.parametrize("arguments, message", [
    (dict(candidates="best"), "candidates must be one of"),
    (dict(output_mode="rle"), "output_mode must be one of"),
    (dict(candidates="sam", hq_token_only=True), "hq_token_only uses the HQ token"),
    (dict(point_grids=[np.full((4, 2), 0.5)]), "exactly one of points_per_side and point_grids"),
    (dict(points_per_side=None), "exactly one of points_per_side and point_grids"),
])
def test_bad_arguments_raise(model, arguments, message):
    with pytest.raises(ValueError, match=message):
        HQSamAutomaticMaskGenerator(model, **arguments)


def test_a_plain_sam_is_refused():
    with pytest.raises(TypeError, match="needs an HQSam model"):
        HQSamAutomaticMaskGenerator(hqsam.build_sam("toy"))


def test_refined_needs_an_hq_mask():
    with pytest.raises(ValueError, match="fine-tuning baseline 'finetune_decoder' lacks"):
        HQSamAutomaticMaskGenerator(hqsam.build_hqsam("toy", variant="finetune_decoder"), candidates="refined")


def test_masks_figure_paints_each_mask_smaller_on_top():
    image = np.full((20, 30, 3), 128, dtype=np.uint8)
    big, small = np.zeros((20, 30), dtype=bool), np.zeros((20, 30), dtype=bool)
    big[2:18, 2:20], small[5:10, 15:25] = True, True
    records = [{"segmentation": small, "area": int(small.sum())}, {"segmentation": big, "area": int(big.sum())}]
    figure = masks_figure(image, records)
    painted = np.asarray(figure.axes[1].images[0].get_array())
    expected = overlay(overlay(image, big, MASK_COLOURS[0]), small, MASK_COLOURS[1])
    assert np.array_equal(painted, expected) and figure.axes[1].get_title() == "2 masks"
    assert np.array_equal(painted[~(big | small)], image[~(big | small)])
