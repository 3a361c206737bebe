"""ONNX export (`hqsam.onnx_export`, `hqsam export-onnx`): onnxruntime's outputs against `HQSamPredictor`'s (which
matches the authors' release, test_parity) for the toy model's prompts and flags, once at 1024 px for ViT-B and
Light HQ-SAM's TinyViT; the torch-free example (examples/onnx_segment.py); the command line's error lines."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import onnxruntime
import pytest
from PIL import Image
from torch.onnx._internal.exporter import _onnx_program as onnx_program

import hqsam
from conftest import randomize_
from hqsam.cli import main
from hqsam.onnx_export import (
    DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_OUTPUTS, SAM_DECODER_INPUTS, export_decoder, export_encoder,
    export_onnx,
)
from test_parity import PROMPTS, TOLERANCE

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_segment.py"
DECODER_PROMPTS = ("box", "points", "box+points", "box+mask")  # the graph takes at least one point or a box
# The CLI's pair (--multimask) and a second decoder: together each flag both ways.
DECODERS = {"multimask": dict(hq_token_only=False, multimask_output=True),
            "hq_token_only": dict(hq_token_only=True, multimask_output=False)}


def load_example():
    spec = importlib.util.spec_from_file_location("onnx_segment", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


def session(path: Path) -> onnxruntime.InferenceSession:
    return example.session(str(path), threads=1)


def encode(
    encoder: onnxruntime.InferenceSession, predictor: hqsam.HQSamPredictor, image: np.ndarray
) -> Dict[str, np.ndarray]:
    """The encoder graph's outputs on the image resized as the predictor resizes it."""
    resized = predictor.transform.apply_image(image).astype(np.float32)
    return dict(zip(ENCODER_OUTPUTS, encoder.run(None, {"image": resized})))


def decoder_feeds(predictor, encoded, box=None, point_coords=None, point_labels=None, mask_input=None):
    """The decoder's inputs for one prompt in original-image pixels, mapped into the resized frame as
    `HQSamPredictor.predict` maps it: points, then the box's corners (labels 2, 3) or a padding point (-1)."""
    size, transform = predictor.original_size, predictor.transform
    coords, labels = np.zeros((0, 2)), np.zeros(0)
    if point_coords is not None:
        coords, labels = transform.apply_coords(np.asarray(point_coords, dtype=np.float64), size), point_labels
    if box is not None:
        corners = transform.apply_boxes(np.asarray(box, dtype=np.float64)[None], size).reshape(2, 2)
        coords, labels = np.concatenate([coords, corners]), np.concatenate([labels, [2, 3]])
    else:
        coords, labels = np.concatenate([coords, [[0.0, 0.0]]]), np.concatenate([labels, [-1]])
    given = mask_input is not None
    mask = mask_input if given else np.zeros((1, *predictor.model.prompt_encoder.mask_input_size))
    return {**encoded, "point_coords": coords[None].astype(np.float32), "point_labels": labels[None].astype(np.float32),
            "mask_input": mask[None].astype(np.float32), "has_mask_input": np.array([float(given)], dtype=np.float32),
            "orig_im_size": np.array(size, dtype=np.float32)}


def assert_matches(onnx_outputs, expected):
    """masks, iou_predictions, low_res_masks of the graph (a batch of one) against the predictor's. The masks are
    bilinear resizes of the low-res logits, whose float32 rounding alone (torch's against float64) reaches 1e-4 of
    their scale, so their bound is relative to it."""
    masks, iou, low_res = (output[0] for output in onnx_outputs)
    assert masks.shape == expected[0].shape and iou.shape == expected[1].shape and low_res.shape == expected[2].shape
    assert np.abs(iou - expected[1]).max() <= TOLERANCE and np.abs(low_res - expected[2]).max() <= TOLERANCE
    assert np.abs(masks - expected[0]).max() <= TOLERANCE * max(1.0, np.abs(expected[0]).max())


@pytest.fixture(scope="module")
def pair(tmp_path_factory, toy_checkpoint, toy_model, one_thread) -> Dict[str, Path]:
    """What `hqsam export-onnx --multimask --sam-decoder` writes for the toy checkpoint, its weights beside each
    graph as torch.onnx saves those of large graphs (ViT-H's encoder); and a second decoder, in one file."""
    folder = tmp_path_factory.mktemp("onnx")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_program, "_LARGE_MODEL_THRESHOLD", 0)
        assert main(["export-onnx", "--checkpoint", toy_checkpoint, "--output", str(folder), "--multimask",
                     "--sam-decoder"]) == 0
    written = {path.name for path in folder.iterdir()}
    hq_only = export_decoder(toy_model, folder / "hq_token_only_decoder.onnx", hq_token_only=True)
    return {"written": written, "encoder": folder / "sam_hq_toy_encoder.onnx",
            "multimask": folder / "sam_hq_toy_decoder.onnx", "sam": folder / "sam_hq_toy_sam_decoder.onnx",
            "hq_token_only": hq_only}


@pytest.fixture(scope="module")
def sessions(pair) -> Dict[str, onnxruntime.InferenceSession]:
    return {name: session(path) for name, path in pair.items() if name != "written"}


def test_cli_writes_the_graphs_with_their_contract(pair, sessions):
    graphs = {"sam_hq_toy_encoder.onnx", "sam_hq_toy_decoder.onnx", "sam_hq_toy_sam_decoder.onnx"}
    assert pair["written"] == graphs | {f"{graph}.data" for graph in graphs}  # and no staging folder left
    names = {name: ([i.name for i in graph.get_inputs()], [o.name for o in graph.get_outputs()])
             for name, graph in sessions.items()}
    assert names["encoder"] == (["image"], list(ENCODER_OUTPUTS))
    assert names["multimask"] == names["hq_token_only"] == (list(DECODER_INPUTS), list(DECODER_OUTPUTS))
    assert names["sam"] == (list(SAM_DECODER_INPUTS), list(DECODER_OUTPUTS))
    metadata = {name: s.get_modelmeta().custom_metadata_map for name, s in sessions.items()}
    assert metadata["encoder"] == {"image_size": "128"}
    assert metadata["multimask"] == {"image_size": "128", "model": "HQ-SAM", "multimask": "True",
                                     "hq_token_only": "False"}
    assert metadata["hq_token_only"]["hq_token_only"] == "True" and metadata["hq_token_only"]["multimask"] == "False"
    assert metadata["sam"] == {"image_size": "128", "model": "SAM", "multimask": "True"}


@pytest.mark.parametrize("shape", [(200, 300), (300, 130)])  # the padding on either side
def test_encoder_matches_predictor(toy_model, sessions, shape):
    image = np.random.default_rng(3).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    predictor = hqsam.HQSamPredictor(toy_model)
    predictor.set_image(image)
    encoded = encode(sessions["encoder"], predictor, image)
    hq_features = toy_model.mask_decoder.hq_features(predictor.features, predictor.early_features)
    for name, expected in (("image_embeddings", predictor.features), ("hq_features", hq_features)):
        assert encoded[name].shape == expected.shape
        assert np.abs(encoded[name] - expected.detach().numpy()).max() <= TOLERANCE


@pytest.fixture(scope="module")
def encoded(sessions, toy_model, image) -> Dict[str, np.ndarray]:
    return encode(sessions["encoder"], hqsam.HQSamPredictor(toy_model), image)


@pytest.mark.parametrize("prompt", DECODER_PROMPTS)
@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_decoder_matches_predictor(predictor, sessions, encoded, prompt, decoder):
    outputs = sessions[decoder].run(None, decoder_feeds(predictor, encoded, **PROMPTS[prompt]))
    assert_matches(outputs, predictor.predict(**PROMPTS[prompt], **DECODERS[decoder], return_logits=True))


@pytest.mark.parametrize("prompt", ["box", "points"])
def test_sam_decoder_matches_predict_sam(predictor, sessions, encoded, prompt):
    feeds = decoder_feeds(predictor, encoded, **PROMPTS[prompt])
    del feeds["hq_features"]
    outputs = sessions["sam"].run(None, feeds)
    expected = predictor.predict_sam(**PROMPTS[prompt], multimask_output=True, return_logits=True)
    assert outputs[0].shape[1] == 3
    assert_matches(outputs, expected)


def test_example_runs_without_torch_and_matches_predictor(pair, predictor, image, tmp_path):
    box = [40, 30, 220, 170]
    expected, iou, _ = predictor.predict(box=np.array(box), multimask_output=True, return_logits=True)
    logits, example_iou = example.segment(session(pair["encoder"]), session(pair["multimask"]), image, box)
    assert np.abs(logits - expected[0]).max() <= TOLERANCE * max(1.0, np.abs(expected).max())
    assert abs(example_iou - iou[0]) <= TOLERANCE

    Image.fromarray(image).save(tmp_path / "image.png")
    no_torch = "import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; " \
               "runpy.run_path(sys.argv[0], run_name='__main__')"
    command = [sys.executable, "-c", no_torch, str(EXAMPLE), str(pair["encoder"]), str(pair["multimask"]),
               str(tmp_path / "image.png"), "--box", *map(str, box), "--output", str(tmp_path / "mask.png"),
               "--threads", "1"]
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    mask = np.asarray(Image.open(tmp_path / "mask.png")) > 0
    differ = mask != (expected[0] > 0)
    assert mask.any() and not (differ & (np.abs(expected[0]) > 1e-3)).any()  # only ties at 0 may differ


@pytest.mark.parametrize("model_type", ["vit_b", "vit_tiny"])
def test_full_size_backbone_matches_predictor(model_type, image, tmp_path, one_thread):
    """The real 1024-px encoder graph (ViT-B: early feature from block 2; TinyViT: from its second stage), and for
    ViT-B the decoder's at 1024 px on a box (TinyViT's decoder graph is ViT-B's: the backbone's part is fused in
    the encoder graph)."""
    model = randomize_(hqsam.build_hqsam(model_type), seed=3).eval()  # eval() re-caches TinyViT's attention biases
    predictor = hqsam.HQSamPredictor(model)
    predictor.set_image(image)
    encoded = encode(session(export_encoder(model, tmp_path / "encoder.onnx")), predictor, image)
    hq_features = model.mask_decoder.hq_features(predictor.features, predictor.early_features).detach().numpy()
    assert np.abs(encoded["image_embeddings"] - predictor.features.numpy()).max() <= TOLERANCE
    assert np.abs(encoded["hq_features"] - hq_features).max() <= TOLERANCE
    if model_type == "vit_b":
        decoder = session(export_decoder(model, tmp_path / "decoder.onnx", multimask=True))
        outputs = decoder.run(None, decoder_feeds(predictor, encoded, **PROMPTS["box"]))
        assert_matches(outputs, predictor.predict(**PROMPTS["box"], multimask_output=True, return_logits=True))


def test_mistakes_are_one_error_line(toy_checkpoint, tmp_path, capsys, monkeypatch):
    command = ["export-onnx", "--checkpoint", toy_checkpoint, "--output", str(tmp_path)]
    mistakes = [
        (["export-onnx", "--checkpoint", str(tmp_path / "missing.pth"), "--output", str(tmp_path)], "missing.pth"),
        ([*command, "--opset", "11"], "opset must be an integer from 18"),
        ([*command, "--opset", "99"], "got 99"),
        ([*command, "--model-type", "vit_b"], "holds a toy model"),
    ]
    for arguments, words in mistakes:
        assert main(arguments) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and words in err, err
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: ONNX export needs onnxscript: pip install 'hqsam-repro[onnx]'"
    assert not list(tmp_path.iterdir())
    with pytest.raises(TypeError, match="needs an HQSam model"):
        export_onnx(hqsam.build_sam("toy"), tmp_path)
