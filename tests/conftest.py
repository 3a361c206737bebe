import numpy as np
import pytest
import torch

import hqsam


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter random values (many start at zero in SAM's init, which would hide differences)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05 + parameter)
    return model


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
