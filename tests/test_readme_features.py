"""The README's block of what HQ-SAM users reach for (segment everything, ONNX, Hugging Face), run as written on a
toy HQ-SAM checkpoint."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"
CHECKPOINT = "runs/toy/train/sam_hq_toy.pth"


def readme_block() -> str:
    section = README.read_text().split("## Beyond the paper", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_block_runs_on_a_toy_checkpoint(toy_checkpoint, tmp_path, monkeypatch, one_thread):
    block = readme_block()
    assert CHECKPOINT in block
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(block.replace(CHECKPOINT, toy_checkpoint), names)
    model, records = names["model"], names["records"]
    assert records and all(record["segmentation"].shape == (120, 160) for record in records)
    assert all(record["area"] == record["segmentation"].sum() for record in records)
    stem = Path(toy_checkpoint).stem
    assert names["onnx_files"] == {"encoder": Path("onnx") / f"{stem}_encoder.onnx",
                                   "decoder": Path("onnx") / f"{stem}_decoder.onnx"}
    assert all(path.stat().st_size > 0 for path in names["onnx_files"].values())
    same = names["same"].state_dict()
    assert same.keys() == model.state_dict().keys()
    assert all(torch.equal(same[key], value) for key, value in model.state_dict().items())
