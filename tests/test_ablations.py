"""The paper's Table 3 and Table 4 ablations as variants of one model and one trainer: what each trains, what its
decoder computes (against hand-written formulas), where its gradient goes, and that a tiny run's export evaluates as
its variant through the evaluation's own loader."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from segment_anything import SamPredictor

import hqsam
from conftest import randomize_
from hqsam.checkpoint import VARIANT_KEY, checkpoint_state_dict, is_trained_parameter
from hqsam.cli import main
from hqsam.data import TOY_LAYOUT, read_layout
from hqsam.decoding import Encoded, decode
from hqsam.eval.hq_benchmark import evaluate_hq_datasets
from hqsam.modeling import VARIANTS
from hqsam.modeling.variants import SAM_DECODER_MODULES
from hqsam.toy import generate_toy_world
from hqsam.train import fit, load_config
from hqsam.train.config import TrainConfig, recipe_changes, save_config
from hqsam.train.head import HQLogits, hq_state

PAPER_TABLES = Path(hqsam.__file__).parent / "paper_tables"
TRAINS = {  # modules under mask_decoder whose parameters each variant trains, as the paper describes them
    "hq_sam": ("hf_token", "hf_mlp", "embedding_maskfeature", "embedding_encoder", "compress_vit_feat"),
    "hq_decoder": ("hf_token", "hf_mlp"),
    "hq_decoder_conv": ("hf_token", "hf_mlp", "embedding_maskfeature"),
    "hq_decoder_conv_final": ("hf_token", "hf_mlp", "embedding_maskfeature", "embedding_encoder"),
    "hq_decoder_conv_early": ("hf_token", "hf_mlp", "embedding_maskfeature", "compress_vit_feat"),
    "finetune_decoder": ("finetuned",),
    "finetune_output_token": ("finetuned.mask_tokens", "finetuned.output_hypernetworks_mlps.0"),
}
SAM_PASS = ("transformer", "iou_token", "mask_tokens", "output_upscaling")  # what a single-mask pass runs
COPY_PASS = tuple(f"finetuned.{m}" for m in SAM_PASS) + ("finetuned.output_hypernetworks_mlps.0",)
REACHED = {  # with every parameter unfrozen: the modules the trained logits depend on
    **{name: SAM_PASS + TRAINS[name] for name in TRAINS if not name.startswith("finetune")},
    "finetune_decoder": COPY_PASS,
    "finetune_output_token": COPY_PASS,
}


def names(model: torch.nn.Module, modules) -> set:
    return {n for n, _ in model.named_parameters() if n.startswith(tuple(f"mask_decoder.{m}." for m in modules))}


def decoder_inputs(model: hqsam.HQSam, seed: int = 0):
    """Two random images' embeddings and early features, and a box prompt for each: the decoder's inputs."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, 128, 128), generator=generator).float()
    with torch.no_grad():
        embeddings, early = model.encode_image(model.preprocess(images))
    sparse, dense = model.prompt_encoder(points=None, boxes=torch.tensor([[8.0, 10, 90, 100], [30, 20, 120, 70]]),
                                         masks=None)
    return embeddings, early, model.prompt_encoder.get_dense_pe(), sparse, dense


def hand_hq_pass(decoder, embeddings, early, image_pe, sparse, dense, feature):
    """One HQ pass written out: SAM's tokens plus the HQ token through the transformer; the HQ MLP's filter on
    `feature(upscaled decoder feature, embeddings, early)`, B x 1 x 4H x 4W; SAM's single mask and its IoU from
    the same pass."""
    b, c, h, w = embeddings.shape
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight, decoder.hf_token.weight])
    tokens = torch.cat([tokens.expand(b, -1, -1), sparse], dim=1)
    hs, src = decoder.transformer(embeddings + dense, image_pe.expand(b, -1, -1, -1), tokens)
    upscaled = decoder.output_upscaling(src.transpose(1, 2).view(b, c, h, w))
    filters = decoder.hf_mlp(hs[:, 1 + decoder.num_mask_tokens])[:, None]
    hq_mask = (filters @ feature(upscaled, embeddings, early).flatten(2)).view(b, 1, 4 * h, 4 * w)
    hyper_in = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    sam_mask = (hyper_in @ upscaled.flatten(2))[:, :1].view(b, 1, 4 * h, 4 * w)
    return hq_mask, sam_mask, decoder.iou_prediction_head(hs[:, 0])[:, :1]


FEATURES = {  # Table 3's HQ mask features, as the paper's text and the release's code write them
    "hq_decoder": lambda d, up, emb, early: up,
    "hq_decoder_conv": lambda d, up, emb, early: d.embedding_maskfeature(up),
    "hq_decoder_conv_final": lambda d, up, emb, early: d.embedding_maskfeature(up) + d.embedding_encoder(emb),
    "hq_decoder_conv_early": lambda d, up, emb, early: (
        d.embedding_maskfeature(up) + d.compress_vit_feat(early.permute(0, 3, 1, 2))),
    "hq_sam": lambda d, up, emb, early: d.embedding_maskfeature(up) + (
        d.embedding_encoder(emb) + d.compress_vit_feat(early.permute(0, 3, 1, 2))),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_trains_what_it_claims(variant):
    model = hqsam.build_hqsam("toy", variant=variant)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == names(model, TRAINS[variant])
    assert trainable == {n for n, _ in model.named_parameters() if is_trained_parameter(n, variant)}
    assert model.mask_decoder.variant == variant
    for table, row in VARIANTS[variant].paper:
        assert row in pd.read_csv(PAPER_TABLES / f"{table}.csv").iloc[:, 0].tolist()


def test_the_default_is_hq_sam_and_the_baselines_copy_all_of_sams_decoder():
    model = hqsam.build_hqsam("toy")
    assert model.mask_decoder.variant == "hq_sam" and model.mask_decoder.finetuned is None
    assert all(is_trained_parameter(n) == hqsam.is_hq_parameter(n) for n, _ in model.named_parameters())
    assert checkpoint_state_dict(model).keys() == model.state_dict().keys()  # HQ-SAM's export: the release's keys
    sam_decoder = hqsam.build_sam("toy").mask_decoder
    assert set(SAM_DECODER_MODULES) == {name for name, _ in sam_decoder.named_children()}
    baseline = hqsam.build_hqsam("toy", variant="finetune_decoder")
    assert names(baseline, ("finetuned",)) == {f"mask_decoder.finetuned.{n}" for n, _ in sam_decoder.named_parameters()}


@pytest.mark.parametrize("variant", sorted(FEATURES))
@pytest.mark.parametrize("hq_token_only", [True, False])
def test_table3_masks_equal_the_hand_written_features(variant, hq_token_only, one_thread):
    """hq_sam bit for bit as the full global-local fusion; hq_decoder = hf_mlp(token) @ upscaled decoder feature."""
    model = randomize_(hqsam.build_hqsam("toy", variant=variant), seed=2)
    decoder = model.mask_decoder
    embeddings, early, image_pe, sparse, dense = decoder_inputs(model)
    with torch.no_grad():
        masks, iou = decoder(embeddings, image_pe, sparse, dense, False, hq_token_only,
                             decoder.hq_features(embeddings, early))
        hq_mask, sam_mask, sam_iou = hand_hq_pass(decoder, embeddings, early, image_pe, sparse, dense,
                                                  lambda up, emb, e: FEATURES[variant](decoder, up, emb, e))
    assert torch.equal(masks, hq_mask if hq_token_only else sam_mask + hq_mask)
    assert torch.equal(iou, sam_iou)


def test_a_baseline_starts_as_sam_and_decodes_as_plain_sam_with_its_new_weights(toy_model, image, tmp_path):
    sam_only = {k: v for k, v in toy_model.state_dict().items() if not hqsam.is_hq_parameter(k)}
    sam_file = hqsam.save_state_dict(sam_only, tmp_path / "sam_toy.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the HQ parts a baseline does not use are not worth a warning
        model = hqsam.build_hqsam("toy", sam_file, variant="finetune_decoder")
    embeddings, early, _, sparse, dense = decoder_inputs(model)
    with torch.no_grad():
        decoded = decode(model, Encoded(embeddings, model.mask_decoder.hq_features(embeddings, early)), sparse, dense)
    assert torch.equal(decoded["HQ-SAM"].logits, decoded["SAM"].logits)  # the copy starts as SAM's decoder

    randomize_(model.mask_decoder.finetuned, seed=4)  # as if trained
    tuned = hqsam.build_sam("toy")
    finetuned = {f"mask_decoder.{k}": v for k, v in model.mask_decoder.finetuned.state_dict().items()}
    tuned.load_state_dict({**sam_only, **finetuned})
    original = hqsam.build_sam("toy")
    original.load_state_dict(sam_only)
    ours = hqsam.HQSamPredictor(model)
    ours.set_image(image)
    box = dict(box=np.array([40, 30, 220, 170]), return_logits=True)
    # the baseline's output is SAM's with the fine-tuned decoder; its SAM output stays the original SAM's
    for meta_model, multimask_output, prediction in ((tuned, False, ours.predict(multimask_output=False, **box)),
                                                     (original, True, ours.predict_sam(multimask_output=True, **box))):
        meta = SamPredictor(meta_model)
        meta.set_image(image)
        for a, b in zip(prediction, meta.predict(multimask_output=multimask_output, **box)):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradient_reaches_only_what_the_variant_uses(variant, one_thread):
    model = randomize_(hqsam.build_hqsam("toy", variant=variant), seed=5)
    embeddings, early, _, sparse, dense = decoder_inputs(model)
    groups = [(torch.arange(2), sparse.detach(), dense.detach())]

    def reached() -> set:
        model.zero_grad(set_to_none=True)
        HQLogits(model)(embeddings, early, groups).sum().backward()
        return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}

    trained = names(model, TRAINS[variant]) & names(model, REACHED[variant])
    assert reached() == trained
    if variant != "finetune_decoder":
        assert trained == names(model, TRAINS[variant])
    else:  # the single-mask loss cannot reach the IoU head or the three multimask MLPs
        assert names(model, TRAINS[variant]) - trained == names(model, (
            "finetuned.iou_prediction_head", *(f"finetuned.output_hypernetworks_mlps.{i}" for i in (1, 2, 3))))
    for parameter in model.mask_decoder.parameters():
        parameter.requires_grad = True
    assert reached() == names(model, REACHED[variant])  # nothing else in the decoder is used, SAM's own included


def test_unknown_variant_is_one_line_naming_the_closest(capsys):
    with pytest.raises(ValueError, match=r"unknown variant 'hq_decodr': did you mean 'hq_decoder'\? choose one of "
                                         r"hq_sam, hq_decoder,") as error:
        load_config("toy", ["variant=hq_decodr"])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="unknown variant 'finetune'"):
        hqsam.build_hqsam("toy", variant="finetune")
    assert main(["train", "--config", "toy", "variant=hq_decodr"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_variant_is_a_recipe_field_with_its_own_default_folder(tmp_path):
    assert load_config("toy").variant == "hq_sam"
    assert load_config("toy", ["variant=hq_decoder"]).output_dir == load_config("toy").output_dir + "-hq_decoder"
    assert load_config("paper", ["variant=finetune_decoder"]).output_dir.endswith("train-finetune_decoder")
    config = TrainConfig(output_dir=str(tmp_path))
    save_config(config, tmp_path / "config.yaml")
    older = (tmp_path / "config.yaml").read_text().replace("variant: hq_sam\n", "")
    (tmp_path / "config.yaml").write_text(older)  # a run saved before the field existed resumes
    assert recipe_changes(config, tmp_path / "config.yaml") == []
    config.variant = "hq_decoder"
    assert recipe_changes(config, tmp_path / "config.yaml") == ["variant"]


def test_a_checkpoint_keeps_its_variant(tmp_path):
    model = randomize_(hqsam.build_hqsam("toy", variant="finetune_output_token"), seed=6)
    path = hqsam.save_state_dict(checkpoint_state_dict(model), tmp_path / "baseline.pth")
    loaded = hqsam.build_hqsam("auto", path)
    assert loaded.mask_decoder.variant == "finetune_output_token"
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(hqsam.CheckpointError, match="holds the variant 'finetune_output_token' but variant='hq_sam'"):
        hqsam.build_hqsam("auto", path, variant="hq_sam")


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
    return generate_toy_world(tmp_path_factory.mktemp("toy"), num_train=8, num_val=1)


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory):
    sam = randomize_(hqsam.build_sam("toy"), seed=3)
    return hqsam.save_state_dict(sam.state_dict(), tmp_path_factory.mktemp("sam") / "sam_toy.pth")


@pytest.mark.parametrize("variant", ["hq_decoder_conv_final", "finetune_decoder"])
def test_a_tiny_run_exports_what_evaluation_loads_as_its_variant(toy_world, sam_checkpoint, tmp_path, variant,
                                                                 one_thread, capsys):
    settings = dict(data_root=toy_world, sam_checkpoint=sam_checkpoint, output_dir=tmp_path / "run", progress="false",
                    val_every=0, loss_points=256, batch_size=4, max_steps=2, epochs=1, variant=variant)
    result = fit(load_config("toy", [f"{k}={v}" for k, v in settings.items()]))
    exported = torch.load(result.checkpoint, weights_only=True)
    assert bytes(exported.pop(VARIANT_KEY).tolist()).decode() == variant
    sam = torch.load(sam_checkpoint, weights_only=True)
    assert all(torch.equal(exported[k], v) for k, v in sam.items())  # SAM itself stayed frozen
    torch.manual_seed(42)  # as the run started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = hqsam.build_hqsam("toy", sam_checkpoint, variant)
    start = hq_state(reference)
    reference.load_state_dict(torch.load(tmp_path / "run/checkpoints/last.pth", weights_only=True)["hq"], strict=False)
    trained = hq_state(reference)
    assert trained.keys() == start.keys() and all(torch.equal(exported[k], v) for k, v in trained.items())
    assert max((trained[k] - start[k]).abs().max().item() for k in start) > 1e-4

    evaluated = hqsam.build_hqsam("auto", result.checkpoint)  # the loader of `hqsam eval` and notebook 04
    assert evaluated.mask_decoder.variant == variant
    sources = read_layout(toy_world, TOY_LAYOUT, split="val")
    rows = evaluate_hq_datasets(evaluated, sources, max_images=1, progress=False)
    expected = evaluate_hq_datasets(reference, sources, max_images=1, progress=False)
    pd.testing.assert_frame_equal(rows, expected)
    with pytest.warns(UserWarning, match="plain SAM checkpoint"):
        sam_model = hqsam.build_hqsam("toy", sam_checkpoint)
    plain = evaluate_hq_datasets(sam_model, sources, max_images=1, progress=False)
    pd.testing.assert_frame_equal(rows[rows.model == "SAM"], plain[plain.model == "SAM"])  # SAM vs the variant
    image = np.random.default_rng(0).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    box = dict(box=np.array([20, 15, 130, 100]), multimask_output=False, return_logits=True)
    predictors = [hqsam.HQSamPredictor(model) for model in (evaluated, reference)]
    for predictor in predictors:
        predictor.set_image(image)
    for a, b in zip(*(predictor.predict(**box) for predictor in predictors)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(predictors[0].predict(**box)[2], predictors[0].predict_sam(**box)[2])

    output = tmp_path / "eval"
    assert main(["eval", "hq", "--checkpoint", str(result.checkpoint), "--data-root", str(toy_world), "--layout", "toy",
                 "--max-images", "1", "--output", str(output), "--no-progress", "--device", "cpu"]) == 0
    assert f"holds the variant {variant}" in capsys.readouterr().err
    written = pd.read_csv(output / "hq_rows.csv")
    np.testing.assert_allclose(written[["iou", "biou"]].to_numpy(float), expected[["iou", "biou"]].to_numpy(float))


def test_a_baseline_trains_the_same_on_two_processes_and_resumed(toy_world, sam_checkpoint, tmp_path, one_thread):
    """finetune_decoder (its IoU head and multimask MLPs get no gradient) under DDP, and stopped after its first step
    and resumed (its saved state holds the fine-tuned copy): the weights of one uninterrupted process."""
    settings = dict(data_root=toy_world, sam_checkpoint=sam_checkpoint, progress="false", val_every=0, loss_points=256,
                    batch_size=4, epochs=1, lr=1e-4, variant="finetune_decoder")
    overrides = [f"{k}={v}" for k, v in settings.items()]
    one = fit(load_config("toy", [*overrides, "max_steps=2", f"output_dir={tmp_path / 'one'}"])).checkpoint
    fit(load_config("toy", [*overrides, "max_steps=1", f"output_dir={tmp_path / 'resumed'}"]))
    fit(load_config("toy", [*overrides, "max_steps=2", f"output_dir={tmp_path / 'resumed'}"]), resume=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = subprocess.run([*launcher, "-m", "hqsam", "train", "--config", "toy", *overrides, "max_steps=2",
                          f"output_dir={tmp_path / 'two'}"], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    reference = torch.load(one, weights_only=True)
    for run, tolerance in (("resumed", 0.0), ("two", 1e-5)):
        weights = torch.load(tmp_path / run / one.name, weights_only=True)
        assert weights.keys() == reference.keys()
        assert max((weights[k].float() - reference[k].float()).abs().max().item() for k in reference) <= tolerance
