"""Checkpoint names, loading rules, frozen parameters and the errors for every kind of bad file."""

import argparse
import warnings

import pytest
import segment_anything
import segment_anything_hq
import torch

import hqsam
from conftest import randomize_
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


@pytest.fixture(scope="module")
def light_hq_sam_state():
    """The authors' Light HQ-SAM (`build_sam_vit_t`, the model `sam_hq_vit_tiny.pth` was saved from), random weights."""
    return randomize_(segment_anything_hq.sam_model_registry["vit_tiny"](), seed=7).state_dict()


def test_light_hq_sam_checkpoint_loads_key_for_key(light_hq_sam_state, tmp_path):
    path = hqsam.save_state_dict(light_hq_sam_state, tmp_path / "sam_hq_vit_tiny.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = hqsam.build_hqsam("auto", path)
    loaded = model.state_dict()
    assert loaded.keys() == light_hq_sam_state.keys()
    assert all(torch.equal(loaded[key], value) for key, value in light_hq_sam_state.items())
    assert model.mask_decoder.compress_vit_feat[0].in_channels == 160  # the release's vit_dim for TinyViT


def test_mobile_sam_checkpoint_warns_and_lists_fresh_parts(light_hq_sam_state, tmp_path):
    """`mobile_sam.pt` is MobileSAM's plain SAM state dict: the same TinyViT and SAM's decoder, no HQ parts."""
    mobile_sam = {k: v for k, v in light_hq_sam_state.items() if not hqsam.is_hq_parameter(k)}
    assert mobile_sam.keys() == hqsam.build_sam("vit_tiny").state_dict().keys()
    path = hqsam.save_state_dict(mobile_sam, tmp_path / "mobile_sam.pt")
    with pytest.warns(UserWarning, match="plain SAM checkpoint.*hqsam download sam_hq_vit_tiny"):
        loaded = hqsam.build_hqsam("vit_tiny", path).state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in mobile_sam.items())


def test_tiny_vit_of_another_shape_is_named(light_hq_sam_state):
    fewer = {k: v for k, v in light_hq_sam_state.items() if not k.startswith("image_encoder.layers.2.blocks.5.")}
    with pytest.raises(CheckpointError, match=r"64 wide with 2\+2\+5\+2 blocks; .*vit_tiny \(64 wide with 2\+2\+6\+2"):
        hqsam.infer_model_type(fewer)


def test_unknown_model_type_and_auto_without_checkpoint():
    with pytest.raises(ValueError, match="unknown model type 'vit_x'.*vit_b"):
        hqsam.build_hqsam("vit_x")
    with pytest.raises(ValueError, match="pass checkpoint"):
        hqsam.build_hqsam("auto")
