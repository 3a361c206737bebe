"""Training: batched decoding equals per-image decoding, DDP (gloo, 2 processes) equals one process with the
global batch, a killed and resumed run equals an uninterrupted one, the export loads in the authors' package."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from segment_anything_hq import SamPredictor as ReleasePredictor

import hqsam
from conftest import build_release, randomize_
from hqsam.data.toy_world import generate_toy_world
from hqsam.train import load_config
from hqsam.train.config import TrainConfig
from hqsam.train.examples import TrainingExamples, collate
from hqsam.train.head import HQLogits, embed_prompts, encode_frozen, hq_state
from hqsam.train.logs import CsvLog
from hqsam.data import read_layout, TOY_LAYOUT
from torch.utils.data import ConcatDataset

ROOT = Path(__file__).resolve().parents[1]
TOY_SIZE = hqsam.MODEL_SPECS["toy"].image_size


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory) -> Path:
    return generate_toy_world(tmp_path_factory.mktemp("toy"), num_train=24, num_val=3)


@pytest.fixture(scope="session")
def toy_sam_checkpoint(tmp_path_factory) -> Path:
    """A plain SAM checkpoint of the toy backbone with random weights (quality is not the point here)."""
    sam = randomize_(hqsam.build_sam("toy"), seed=3)
    return hqsam.save_state_dict(sam.state_dict(), tmp_path_factory.mktemp("sam") / "sam_toy.pth")


def run_cli(args, env_threads=1):
    env = {**os.environ, "OMP_NUM_THREADS": str(env_threads), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for a run and return its output; a run that hangs is killed (with its children) and fails the test."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def overrides(toy_world, toy_sam_checkpoint, output, **extra):
    values = dict(data_root=toy_world, sam_checkpoint=toy_sam_checkpoint, output_dir=output, progress="false",
                  val_every=0, loss_points=256, **extra)
    return [f"{k}={v}" for k, v in values.items()]


def hq_weights(path) -> dict:
    return {k: v for k, v in torch.load(path, weights_only=True).items() if hqsam.is_hq_parameter(k)}


def assert_same_weights(a: dict, b: dict, tolerance: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= tolerance, f"HQ weights differ by {worst}"


def assert_trained(weights: dict, sam_checkpoint, seed: int = 42, moved: float = 1e-4) -> None:
    """The weights moved away from the initialisation a run with this seed starts from."""
    torch.manual_seed(seed)
    with pytest.warns(UserWarning, match="plain SAM checkpoint"):
        start = hq_state(hqsam.build_hqsam("toy", sam_checkpoint))
    assert max((weights[k] - start[k]).abs().max().item() for k in start) > moved


def test_batched_decoding_equals_per_image_decoding(toy_world, toy_sam_checkpoint):
    """Our step decodes all prompts of a batch together; the release decodes image by image."""
    model = randomize_(hqsam.build_hqsam("toy", toy_sam_checkpoint), seed=5)
    examples = TrainingExamples(
        ConcatDataset(read_layout(toy_world, TOY_LAYOUT, split="train")), TOY_SIZE, (64, 64), seed=1,
        scale_range=(0.1, 2.0), flip_prob=0.5, prompt_kinds=("box", "point", "noise_mask"), num_points=10,
    )
    batch = collate([examples[(0, i)] for i in range(12)])
    assert {"box", "point", "noise_mask"} <= set(batch["kind"])
    embeddings, early = encode_frozen(model, batch["image"])
    batched = HQLogits(model)(embeddings, early, embed_prompts(model, batch))
    for i in range(12):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        single = HQLogits(model)(embeddings[i : i + 1], early[i : i + 1], embed_prompts(model, one))
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-4, rtol=0)


def test_examples_are_keyed_by_sample_not_by_call_order(toy_world):
    examples = TrainingExamples(
        ConcatDataset(read_layout(toy_world, TOY_LAYOUT, split="train")), TOY_SIZE, (64, 64), seed=7,
        scale_range=(0.1, 2.0), flip_prob=0.5, prompt_kinds=("box", "point", "noise_mask"), num_points=10,
    )
    later = examples[(2, 5)]
    examples[(0, 1)]
    again = examples[(2, 5)]
    assert torch.equal(later["image"], again["image"]) and later["kind"] == again["kind"]
    assert not torch.equal(examples[(3, 5)]["image"], later["image"])  # a new epoch, a new augmentation
    cycled = TrainingExamples(examples.source, TOY_SIZE, (64, 64), 7, (0.1, 2.0), 0.5, ("box",), 10, augmentations=2)
    assert torch.equal(cycled[(0, 4)]["image"], cycled[(2, 4)]["image"])  # the cached-embedding mode


def test_two_processes_equal_one_with_the_global_batch(toy_world, toy_sam_checkpoint, tmp_path):
    # lr 1e-4: Adam turns float-rounding differences of near-zero gradients (a sum over 8 samples in one process,
    # 2 x 4 all-reduced in two) into steps of up to lr, so the tolerance is only meaningful well below lr.
    common = overrides(toy_world, toy_sam_checkpoint, None, batch_size=8, max_steps=3, epochs=1, lr=1e-4)
    common = [c for c in common if not c.startswith("output_dir")]
    single = run_cli(["-m", "hqsam", "train", "--config", "toy", *common, f"output_dir={tmp_path / 'one'}"])
    out_single = finish(single)
    assert single.returncode == 0, out_single
    double = run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hqsam", "train",
                      "--config", "toy", *common, f"output_dir={tmp_path / 'two'}"])
    out_double = finish(double)
    assert double.returncode == 0, out_double
    one, two = hq_weights(tmp_path / "one" / "sam_hq_toy.pth"), hq_weights(tmp_path / "two" / "sam_hq_toy.pth")
    assert_same_weights(one, two, 1e-5)
    assert_trained(one, toy_sam_checkpoint, moved=1e-5)
    losses_one = pd.read_csv(tmp_path / "one" / "steps.csv")["loss"].to_numpy()
    losses_two = pd.read_csv(tmp_path / "two" / "steps.csv")["loss"].to_numpy()
    np.testing.assert_allclose(losses_one, losses_two, atol=1e-5)


def test_killed_run_resumes_to_the_same_weights(toy_world, toy_sam_checkpoint, tmp_path):
    """A real subprocess killed mid-epoch, then `--resume`: the same final weights as an uninterrupted run."""
    settings = dict(batch_size=8, epochs=3, checkpoint_every=2)  # 24 images: 3 steps per epoch, 9 in all
    reference = run_cli(["-m", "hqsam", "train", *overrides(toy_world, toy_sam_checkpoint, tmp_path / "ref", **settings)])
    output = finish(reference)
    assert reference.returncode == 0, output

    killed_dir = tmp_path / "killed"
    arguments = ["-m", "hqsam", "train", *overrides(toy_world, toy_sam_checkpoint, killed_dir, **settings)]
    victim = run_cli(arguments)
    steps = killed_dir / "steps.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if steps.exists() and len(steps.read_text().splitlines()) - 1 >= 5:  # past the checkpoint at step 4
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    finish(victim, timeout=60)
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed_dir / "sam_hq_toy.pth").exists()
    saved = torch.load(killed_dir / "checkpoints" / "last.pth", weights_only=True)
    assert saved["global_step"] < 9 and saved["step_in_epoch"] > 0  # killed mid-epoch

    resumed = run_cli([*arguments, "--resume"])
    output = finish(resumed)
    assert resumed.returncode == 0, output
    assert "resuming from" in output
    assert_same_weights(hq_weights(tmp_path / "ref" / "sam_hq_toy.pth"), hq_weights(killed_dir / "sam_hq_toy.pth"), 1e-6)
    log = pd.read_csv(steps)
    assert log["step"].tolist() == list(range(1, 10))  # rows after the checkpoint were redone, not duplicated
    reference_log = pd.read_csv(tmp_path / "ref" / "steps.csv")
    np.testing.assert_allclose(log["loss"], reference_log["loss"], atol=1e-6)


def test_export_loads_in_the_authors_package_with_the_same_outputs(toy_world, toy_sam_checkpoint, tmp_path):
    config = load_config("toy", overrides(toy_world, toy_sam_checkpoint, tmp_path, batch_size=8, max_steps=2))
    result = hqsam.train.fit(config)
    image = np.random.default_rng(0).integers(0, 256, size=(180, 240, 3), dtype=np.uint8)
    ours = hqsam.HQSamPredictor(hqsam.build_hqsam("toy", result.checkpoint))
    theirs = ReleasePredictor(build_release(hqsam.MODEL_SPECS["toy"], str(result.checkpoint)))
    ours.set_image(image)
    theirs.set_image(image)
    box = np.array([30, 20, 200, 150])
    for hq_token_only in (True, False):
        mine = ours.predict(box=box, multimask_output=False, hq_token_only=hq_token_only, return_logits=True)
        release = theirs.predict(box=box, multimask_output=False, hq_token_only=hq_token_only, return_logits=True)
        np.testing.assert_allclose(mine[2], release[2], atol=1e-4)
    assert_trained(hq_weights(result.checkpoint), toy_sam_checkpoint)


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown config keys .*'epoch'"):
        load_config("toy", ["epoch=3"])
    with pytest.raises(ValueError, match="key=value"):
        load_config("toy", ["epochs"])
    with pytest.raises(FileNotFoundError, match="use a profile"):
        load_config("nope")
    with pytest.raises(ValueError, match="prompt_kinds"):
        TrainConfig(prompt_kinds=("box", "scribble"))
    config = load_config("paper", ["epochs=2", "scale_range=[0.5, 1.5]"])
    assert config.epochs == 2 and config.scale_range == (0.5, 1.5) and config.lr == 1e-3 and config.batch_size == 32


def test_resume_refuses_a_changed_recipe(toy_world, toy_sam_checkpoint, tmp_path):
    hqsam.train.fit(load_config("toy", overrides(toy_world, toy_sam_checkpoint, tmp_path, batch_size=8, max_steps=1)))
    changed = load_config("toy", overrides(toy_world, toy_sam_checkpoint, tmp_path, batch_size=4, max_steps=2))
    with pytest.raises(ValueError, match="recipe changed.*batch_size"):
        hqsam.train.fit(changed, resume=True)


def test_csv_log_drops_rows_past_the_resumed_state(tmp_path):
    log = CsvLog(tmp_path / "steps.csv")
    for step in range(1, 6):
        log.append({"step": step, "loss": 1.0 / step})
    log.append({"step": 6, "loss": 0.1, "extra": 2.0})  # a new column rewrites the file with the union
    reopened = CsvLog(tmp_path / "steps.csv", truncate_after=("step", 3))
    reopened.append({"step": 4, "loss": 0.5})
    frame = pd.read_csv(tmp_path / "steps.csv")
    assert frame["step"].tolist() == [1, 2, 3, 4] and "extra" in frame.columns


def test_trains_on_a_users_folder_with_0_1_masks(toy_world, toy_sam_checkpoint, tmp_path, capsys):
    """Users' data with masks stored 0/1 (which the release silently scores as empty) trains, and is reported."""
    from PIL import Image

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for image_path in sorted((toy_world / "toy" / "train" / "im").glob("*.jpg"))[:8]:
        (images / image_path.name).write_bytes(image_path.read_bytes())
        mask = np.array(Image.open(toy_world / "toy" / "train" / "gt" / f"{image_path.stem}.png")) > 128
        Image.fromarray(mask.astype(np.uint8)).save(masks / f"{image_path.stem}.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(masks / "orphan.png")
    folder = {"type": "folder", "name": "mine", "image_dir": str(images), "mask_dir": str(masks)}
    config = load_config("toy", overrides(toy_world, toy_sam_checkpoint, tmp_path / "run", batch_size=4, max_steps=2))
    config.train_sources, config.extra_sources = [], [folder]
    hqsam.train.fit(config)
    printed = capsys.readouterr().out
    assert "train/mine: 8 images" in printed and "0/1 8" in printed and "masks without an image: 1 (orphan)" in printed
    assert len(pd.read_csv(tmp_path / "run" / "steps.csv")) == 2


def test_toy_sam_trains_on_objects_and_scenes(toy_world, tmp_path, one_thread):
    from hqsam.data import generate_toy_scenes
    from hqsam.train import train_toy_sam

    scenes = generate_toy_scenes(tmp_path, num_images=2)
    path = train_toy_sam(toy_world, tmp_path / "sam_toy.pth", steps=2, batch_size=4, scenes=scenes, progress=False)
    state = torch.load(path, weights_only=True)
    assert state and not any(hqsam.is_hq_parameter(k) for k in state)
    hqsam.build_sam("toy").load_state_dict(state)  # a plain SAM checkpoint, strictly
    with pytest.raises(FileNotFoundError, match="generate_toy_scenes"):
        train_toy_sam(toy_world, tmp_path / "other.pth", steps=1, scenes=tmp_path / "nowhere", progress=False)
    (scenes / "instances.json").write_text("{}")
    with pytest.raises(ValueError, match="not a COCO instances file"):  # the scenes are read, not ignored
        train_toy_sam(toy_world, tmp_path / "other.pth", steps=1, scenes=scenes, progress=False)
