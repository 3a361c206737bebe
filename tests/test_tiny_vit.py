"""Light HQ-SAM (vit_tiny) against the authors' `segment_anything_hq` (`build_sam_vit_t`) at 1024 px, random weights:
the same state dict, image embedding, early feature and predictions; plain `build_sam("vit_tiny")` against Meta's
SamPredictor."""

import pytest
import segment_anything_hq
import torch
from segment_anything import SamPredictor
from segment_anything_hq import SamPredictor as ReleasePredictor

import hqsam
from conftest import randomize_
from test_parity import PROMPTS, TOLERANCE, assert_close


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    model = randomize_(hqsam.build_hqsam("vit_tiny"), seed=5)
    return str(hqsam.save_state_dict(model.state_dict(), tmp_path_factory.mktemp("tiny") / "sam_hq_vit_tiny.pth"))


@pytest.fixture(scope="module")
def predictors(checkpoint, image, one_thread):
    """Ours loaded by `build_hqsam` (which refreshes TinyViT's cached attention biases itself), the authors' loaded
    strictly and then put in eval mode again, as their demo does: their TinyViT caches its attention biases when
    eval() is called, before the weights are loaded."""
    release = segment_anything_hq.sam_model_registry["vit_tiny"]()
    release.load_state_dict(torch.load(checkpoint, weights_only=True), strict=True)
    pair = hqsam.HQSamPredictor(hqsam.build_hqsam("vit_tiny", checkpoint)), ReleasePredictor(release.eval())
    for predictor in pair:
        predictor.set_image(image)
    return pair


def test_state_dict_and_learnable_parts_are_the_authors(checkpoint):
    with torch.device("meta"):  # shapes only, as `hqsam.eval.speed.backbone_sizes` builds every paper backbone
        ours = hqsam.build_hqsam("vit_tiny").state_dict()
    theirs = segment_anything_hq.sam_model_registry["vit_tiny"]()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    learnable = sum(p.numel() for p in hqsam.build_hqsam("vit_tiny", checkpoint).parameters() if p.requires_grad)
    assert learnable == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert learnable * 4 / 2**20 == pytest.approx(1.7, abs=0.05)  # Table 10: Light HQ-SAM learns 1.7 MB
    plain = hqsam.build_sam("vit_tiny").state_dict()  # MobileSAM's keys: the same without the HQ parts
    assert {k: v.shape for k, v in plain.items()} == {
        k: v.shape for k, v in ours.items() if not hqsam.is_hq_parameter(k)}


def test_embedding_and_early_feature_match_the_release(predictors):
    ours, theirs = predictors
    assert ours.features.shape == (1, 256, 64, 64) and ours.early_features.shape == (1, 64, 64, 160)
    assert (ours.features - theirs.features).abs().max() <= TOLERANCE
    assert (ours.early_features - theirs.interm_features[0]).abs().max() <= TOLERANCE


@pytest.mark.parametrize("prompt", ["box", "points"])
@pytest.mark.parametrize("multimask_output", [True, False])
@pytest.mark.parametrize("hq_token_only", [True, False])
def test_predict_matches_release(predictors, prompt, multimask_output, hq_token_only):
    arguments = dict(**PROMPTS[prompt], multimask_output=multimask_output, return_logits=True,
                     hq_token_only=hq_token_only)
    assert_close(*(predictor.predict(**arguments) for predictor in predictors))


def test_plain_sam_matches_meta_predictor(predictors, image):
    ours = predictors[0]
    sam = hqsam.build_sam("vit_tiny")
    sam.load_state_dict({k: v for k, v in ours.model.state_dict().items() if not hqsam.is_hq_parameter(k)})
    meta = SamPredictor(sam)
    meta.set_image(image)
    assert (meta.features - ours.features).abs().max() <= TOLERANCE
    for multimask_output in (True, False):
        arguments = dict(**PROMPTS["box+points"], multimask_output=multimask_output, return_logits=True)
        assert_close(ours.predict_sam(**arguments), meta.predict(**arguments))
