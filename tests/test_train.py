"""Training: batched decoding equals per-image decoding, DDP (gloo, 2 processes) and gradient accumulation equal
one process with the global batch (validation included), a killed and resumed run equals an uninterrupted one, the
export loads in the authors' package."""

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
from hqsam.train import load_config
from hqsam.train.config import TrainConfig
from hqsam.train.examples import TrainingExamples, collate
from hqsam.train.head import HQLogits, embed_prompts, encode_frozen, hq_state
from hqsam.train.logs import CsvLog
from hqsam.train.loop import micro_batches
from hqsam.data import read_layout, TOY_LAYOUT
from hqsam.toy import generate_toy_scenes, generate_toy_world, loss_log_path, train_toy_sam
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
                  val_every=0, loss_points=256)
    return [f"{k}={v}" for k, v in {**values, **extra}.items()]


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
    with pytest.warns(UserWarning, match="plain SAM checkpoint"):
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


def test_precision_switches_the_frozen_encoder_and_fp32_is_the_plain_encoder(toy_model):
    images = torch.rand(2, 3, TOY_SIZE, TOY_SIZE, generator=torch.Generator().manual_seed(0)) * 255.0
    with torch.no_grad():
        plain = toy_model.encode_image(toy_model.preprocess(images))
    fp32, bf16 = encode_frozen(toy_model, images), encode_frozen(toy_model, images, precision="bf16")
    for expected, full, half in zip(plain, fp32, bf16):
        assert torch.equal(full, expected)
        assert half.dtype == torch.float32 and (half - expected).abs().max() > 1e-3  # bf16 really ran
        assert (half - expected).norm() / expected.norm() < 0.03  # ... and stays close
    with pytest.raises(ValueError, match="precision must be one of .*'fp16'"):
        encode_frozen(toy_model, images, precision="fp16")


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


def train_run(toy_world, toy_sam_checkpoint, output: Path, processes: int, **extra) -> Path:
    """A 3-step run of batch 8 (one epoch of the 24 images), validated on 2 images of each of the 4 val sets."""
    # lr 1e-4: Adam turns float-rounding differences of near-zero gradients (a sum over 8 samples in one process,
    # 2 x 4 all-reduced in two) into steps of up to lr, so the tolerance is only meaningful well below lr.
    settings = dict(batch_size=8, max_steps=3, epochs=1, lr=1e-4, val_every=1, max_val_images=2, **extra)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    run = run_cli([*launcher, "-m", "hqsam", "train", "--config", "toy",
                   *overrides(toy_world, toy_sam_checkpoint, output, **settings)])
    printed = finish(run)
    assert run.returncode == 0, printed
    return output


@pytest.fixture(scope="module")
def one_pass_run(toy_world, toy_sam_checkpoint, tmp_path_factory) -> Path:
    output = train_run(toy_world, toy_sam_checkpoint, tmp_path_factory.mktemp("one_pass"), processes=1)
    assert_trained(hq_weights(output / "sam_hq_toy.pth"), toy_sam_checkpoint, moved=1e-5)
    return output


@pytest.mark.parametrize("processes, batch_per_gpu", [(2, None), (1, 2), (2, 2)])
def test_split_batches_equal_one_pass_of_the_global_batch(
    toy_world, toy_sam_checkpoint, one_pass_run, tmp_path, processes, batch_per_gpu
):
    """2 processes x 4, 1 process x 4 micro-steps of 2, 2 processes x 2 micro-steps of 2: all one step of 8."""
    extra = {} if batch_per_gpu is None else {"batch_per_gpu": batch_per_gpu}
    split = train_run(toy_world, toy_sam_checkpoint, tmp_path / "split", processes, **extra)
    assert_same_weights(hq_weights(one_pass_run / "sam_hq_toy.pth"), hq_weights(split / "sam_hq_toy.pth"), 1e-5)
    losses_one = pd.read_csv(one_pass_run / "steps.csv")["loss"].to_numpy()
    losses_split = pd.read_csv(split / "steps.csv")["loss"].to_numpy()
    np.testing.assert_allclose(losses_one, losses_split, atol=1e-5)
    assert (split / "val_epoch1.csv").read_text() == (one_pass_run / "val_epoch1.csv").read_text()
    epochs_one, epochs_split = pd.read_csv(one_pass_run / "epochs.csv"), pd.read_csv(split / "epochs.csv")
    validation = [column for column in epochs_one.columns if column not in ("epoch", "train_loss")]
    assert len(validation) == 2 * 10  # SAM and HQ-SAM x (4 sets + average) x (mIoU, mBIoU)
    pd.testing.assert_frame_equal(epochs_one[validation], epochs_split[validation], check_exact=True)
    np.testing.assert_allclose(epochs_one["train_loss"], epochs_split["train_loss"], atol=1e-5)


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
    with pytest.raises(ValueError, match="unknown config key 'epoch' in the overrides: did you mean 'epochs'"):
        load_config("toy", ["epoch=3"])
    with pytest.raises(ValueError, match="key=value"):
        load_config("toy", ["epochs"])
    with pytest.raises(FileNotFoundError, match="use a profile"):
        load_config("nope")
    with pytest.raises(ValueError, match="prompt_kinds"):
        TrainConfig(prompt_kinds=("box", "scribble"))
    for bad, message in [({"batch_per_gpu": 0}, "batch_per_gpu must be at least 1"), ({"target": "hard"}, "target"),
                         ({"precision": "fp16"}, "precision must be one of"), ({"dist_timeout_min": 0}, "timeout")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="profile: paper"):  # a ViT backbone on the toy profile's paths
        TrainConfig(model_type="vit_b")
    paths = dict(sam_checkpoint="mine.pth", data_root="mine", layout="hqseg44k", output_dir="out")
    assert TrainConfig(model_type="vit_b", **paths).sam_checkpoint == "mine.pth"  # all five given: no profile asked
    assert load_config("paper", ["model_type=vit_b"]).sam_checkpoint == "checkpoints/sam_vit_b_01ec64.pth"
    config = load_config("paper", ["epochs=2", "scale_range=[0.5, 1.5]"])
    assert config.epochs == 2 and config.scale_range == (0.5, 1.5) and config.lr == 1e-3 and config.batch_size == 32
    assert (config.batch_per_gpu, config.target, config.precision) == (4, "soft", "fp32")
    toy = load_config("toy")
    assert (toy.batch_per_gpu, toy.target, toy.precision) == (None, "binary", "fp32")


def test_global_batch_splits_into_processes_and_micro_steps(tmp_path):
    assert micro_batches(32, 4, 8) == (4, 1) and micro_batches(32, 4, 1) == (32, 8)  # (per process, micro-steps)
    assert micro_batches(8, None, 2) == (4, 1)
    for batch_size, batch_per_gpu, world in [(8, 3, 1), (12, 4, 2), (9, None, 2)]:
        with pytest.raises(ValueError, match=f"must be a multiple of {world} processes x batch_per_gpu"):
            micro_batches(batch_size, batch_per_gpu, world)
    with pytest.raises(ValueError, match="batch_size 8 .* batch_per_gpu 3"):  # before any model or data is read
        hqsam.train.fit(TrainConfig(batch_size=8, batch_per_gpu=3, output_dir=str(tmp_path), progress=False))


def test_resume_refuses_a_changed_recipe(toy_world, toy_sam_checkpoint, tmp_path):
    hqsam.train.fit(load_config("toy", overrides(toy_world, toy_sam_checkpoint, tmp_path, batch_size=8, max_steps=1)))
    changed = load_config("toy", overrides(toy_world, toy_sam_checkpoint, tmp_path, batch_size=4, max_steps=2))
    with pytest.raises(ValueError, match="recipe changed.*batch_size"):
        hqsam.train.fit(changed, resume=True)
    changed = load_config("toy", overrides(toy_world, toy_sam_checkpoint, tmp_path, batch_size=8, max_steps=2,
                                           target="soft", precision="bf16"))
    with pytest.raises(ValueError, match=r"recipe changed.*\(target, precision\)"):
        hqsam.train.fit(changed, resume=True)
    # Micro-batching does not change the steps (resuming on another number of GPUs is legitimate).
    regrouped = load_config("toy", overrides(toy_world, toy_sam_checkpoint, tmp_path, batch_size=8, max_steps=2,
                                             batch_per_gpu=4))
    assert hqsam.train.fit(regrouped, resume=True).steps == 2


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
    scenes = generate_toy_scenes(tmp_path, num_images=2)
    # lr well above the default: the 50-step warm-up would leave 8 steps at the default too small to show
    path = train_toy_sam(toy_world, tmp_path / "sam_toy.pth", steps=8, batch_size=4, lr=2e-2, scenes=scenes,
                         progress=False)
    state = torch.load(path, weights_only=True)
    assert state and not any(hqsam.is_hq_parameter(k) for k in state)
    hqsam.build_sam("toy").load_state_dict(state)  # a plain SAM checkpoint, strictly
    losses = pd.read_csv(loss_log_path(path))
    assert losses["step"].tolist() == list(range(8))
    assert losses["loss"].tail(3).mean() < 0.92 * losses["loss"].head(3).mean(), losses  # from about 3.0 to 2.5
    torch.manual_seed(0)  # the initialisation train_toy_sam starts from with seed 0
    start = hqsam.build_hqsam("toy").state_dict()
    moved = max((state[k] - start[k]).abs().max().item() for k in state)
    # AdamW moves a weight by about the lr per step (at most ~1e-3 here); another initialisation differs by ~5
    assert 1e-3 < moved < 0.05, moved
    with pytest.raises(FileNotFoundError, match="generate_toy_scenes"):
        train_toy_sam(toy_world, tmp_path / "other.pth", steps=1, scenes=tmp_path / "nowhere", progress=False)
    (scenes / "instances.json").write_text("{}")
    with pytest.raises(ValueError, match="not a COCO instances file"):  # the scenes are read, not ignored
        train_toy_sam(toy_world, tmp_path / "other.pth", steps=1, scenes=scenes, progress=False)
