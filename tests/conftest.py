from functools import partial

import numpy as np
import pytest
import torch
from segment_anything_hq import modeling as release

import hqsam


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values (many start at zero in SAM's init, which would hide differences)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05 + parameter)
    return model


def build_release(spec: hqsam.build.ModelSpec, checkpoint: str) -> release.Sam:
    """The authors' model classes with the given dimensions, loaded strictly from our checkpoint file."""
    embedding = spec.image_size // spec.patch_size
    model = release.Sam(
        image_encoder=release.ImageEncoderViT(
            depth=spec.encoder_depth, embed_dim=spec.encoder_embed_dim, img_size=spec.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=spec.encoder_num_heads,
            patch_size=spec.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=list(spec.encoder_global_attn_indexes), window_size=spec.window_size,
            out_chans=spec.prompt_embed_dim,
        ),
        prompt_encoder=release.PromptEncoder(
            embed_dim=spec.prompt_embed_dim, image_embedding_size=(embedding, embedding),
            input_image_size=(spec.image_size, spec.image_size), mask_in_chans=16,
        ),
        mask_decoder=release.MaskDecoderHQ(
            num_multimask_outputs=3,
            transformer=release.TwoWayTransformer(
                depth=2, embedding_dim=spec.prompt_embed_dim, mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_num_heads,
            ),
            transformer_dim=spec.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=spec.iou_head_hidden_dim,
            vit_dim=spec.encoder_embed_dim,
        ),
    )
    model.load_state_dict(torch.load(checkpoint, weights_only=True), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def one_thread():
    """The toy model's small ops only lose from threading, and badly so on a shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy_model() -> hqsam.HQSam:
    return randomize_(hqsam.build_hqsam("toy"))


@pytest.fixture(scope="session")
def toy_checkpoint(tmp_path_factory, toy_model) -> str:
    return str(hqsam.save_state_dict(toy_model.state_dict(), tmp_path_factory.mktemp("ckpt") / "sam_hq_toy.pth"))


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(200, 300, 3), dtype=np.uint8)


@pytest.fixture()
def predictor(toy_model, image) -> hqsam.HQSamPredictor:
    predictor = hqsam.HQSamPredictor(toy_model)
    predictor.set_image(image)
    return predictor
