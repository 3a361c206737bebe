"""Checkpoint names, loading rules, frozen parameters and the errors for every kind of bad file."""

import argparse
import warnings

import pytest
import segment_anything
import segment_anything_hq
import torch

import hqsam
from hqsam import CheckpointError

RELEASE_BUILDERS = {
    "vit_b": (segment_anything.build_sam_vit_b, segment_anything_hq.build_sam_vit_b),
    "vit_l": (segment_anything.build_sam_vit_l, segment_anything_hq.build_sam_vit_l),
    "vit_h": (segment_anything.build_sam_vit_h, segment_anything_hq.build_sam_vit_h),
}


@pytest.mark.parametrize("model_type", sorted(RELEASE_BUILDERS))
def test_names_and_learnable_counts_equal_the_releases(model_type):
    """Same keys and shapes as `sam_hq_vit_*.pth` (release) and, minus the HQ parts, as `sam_vit_*.pth` (Meta)."""
    build_meta, build_release = RELEASE_BUILDERS[model_type]
    with torch.device("meta"):
        ours = hqsam.build_hqsam(model_type)
        release = build_release()
        meta = build_meta()
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert ours_shapes == {k: v.shape for k, v in release.state_dict().items()}
    assert {k: v for k, v in ours_shapes.items() if not hqsam.is_hq_parameter(k)} == {
        k: v.shape for k, v in meta.state_dict().items()
    }
    learnable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    assert learnable == sum(p.numel() for p in release.parameters() if p.requires_grad)
    if model_type == "vit_b":
        assert learnable == 1_071_104


def test_sam_frozen_hq_parts_trainable(toy_checkpoint):
    model = hqsam.build_hqsam("auto", toy_checkpoint)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.split(".")[1] in hqsam.checkpoint.HQ_MODULES}
    assert {n.split(".")[1] for n in trainable} == set(hqsam.checkpoint.HQ_MODULES)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_hq_checkpoint_round_trip(toy_model, tmp_path, suffix):
    path = hqsam.save_state_dict(toy_model.state_dict(), tmp_path / f"model{suffix}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = hqsam.build_hqsam("auto", path)
    for key, value in toy_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_plain_sam_checkpoint_warns_and_lists_fresh_parts(toy_model, tmp_path):
    sam_only = {k: v for k, v in toy_model.state_dict().items() if not hqsam.is_hq_parameter(k)}
    path = hqsam.save_state_dict(sam_only, tmp_path / "sam_toy.pth")
    with pytest.warns(UserWarning, match="plain SAM checkpoint") as record:
        loaded = hqsam.build_hqsam("toy", path)
    message = str(record[0].message)
    for module in hqsam.checkpoint.HQ_MODULES:
        assert f"mask_decoder.{module}" in message
    assert "hqsam train --config toy" in message  # the toy model has nothing to download
    for key, value in sam_only.items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_nested_state_dict_is_unwrapped(toy_model, tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": toy_model.state_dict()}, path)
    assert torch.equal(
        hqsam.build_hqsam("toy", path).mask_decoder.hf_token.weight, toy_model.mask_decoder.hf_token.weight
    )


def test_checkpoint_of_another_backbone_names_the_right_type(toy_checkpoint):
    with pytest.raises(CheckpointError, match=r"holds a toy model.*model_type='toy'"):
        hqsam.build_hqsam("vit_b", toy_checkpoint)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist.*hqsam download"):
        hqsam.build_hqsam("toy", tmp_path / "nope.pth")


def test_truncated_file(toy_checkpoint, tmp_path):
    data = open(toy_checkpoint, "rb").read()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        hqsam.build_hqsam("toy", path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_corrupt_file(tmp_path, suffix):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        hqsam.build_hqsam("toy", path)


def test_pickled_objects_are_not_loaded(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        hqsam.build_hqsam("toy", path)


def test_checkpoint_missing_sam_weights(toy_model, tmp_path):
    hq_only = {k: v for k, v in toy_model.state_dict().items() if hqsam.is_hq_parameter(k)}
    with pytest.raises(CheckpointError, match="no image-encoder weights.*lacks SAM's weights"):
        hqsam.build_hqsam("toy", hqsam.save_state_dict(hq_only, tmp_path / "hq_only.pth"))
    no_decoder = {k: v for k, v in toy_model.state_dict().items() if not k.startswith("mask_decoder.transformer.")}
    with pytest.raises(CheckpointError, match="of SAM's tensors missing"):
        hqsam.build_hqsam("toy", hqsam.save_state_dict(no_decoder, tmp_path / "no_decoder.pth"))


def test_partial_hq_parts_unexpected_keys_and_shapes(toy_model, tmp_path):
    state = toy_model.state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("mask_decoder.hf_mlp.")}
    with pytest.raises(CheckpointError, match="HQ parts are incomplete"):
        hqsam.build_hqsam("toy", hqsam.save_state_dict(partial, tmp_path / "partial.pth"))
    extra = dict(state, **{"mask_decoder.context_token.weight": torch.zeros(1, 128)})
    with pytest.raises(CheckpointError, match="1 unexpected tensors"):
        hqsam.build_hqsam("toy", hqsam.save_state_dict(extra, tmp_path / "extra.pth"))
    reshaped = dict(state, **{"mask_decoder.hf_token.weight": torch.zeros(1, 64)})
    with pytest.raises(CheckpointError, match="wrong shape.*hf_token"):
        hqsam.build_hqsam("toy", hqsam.save_state_dict(reshaped, tmp_path / "reshaped.pth"))


def test_tiny_vit_checkpoint_is_refused_clearly(tmp_path):
    path = hqsam.save_state_dict({"image_encoder.layers.0.blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match="TinyViT"):
        hqsam.build_hqsam("auto", path)


def test_unknown_model_type_and_auto_without_checkpoint():
    with pytest.raises(ValueError, match="unknown model type 'vit_x'.*vit_b"):
        hqsam.build_hqsam("vit_x")
    with pytest.raises(ValueError, match="pass checkpoint"):
        hqsam.build_hqsam("auto")
