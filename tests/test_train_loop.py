"""The training loop's pieces without a training run: the recipe a resumed run must keep, the saved state."""

import dataclasses

import torch

import hqsam
from conftest import randomize_
from hqsam.train.config import TrainConfig, recipe_changes, save_config
from hqsam.train.head import hq_state
from hqsam.train.loop import RunLogs, TrainState


def test_recipe_changes_names_the_marked_fields_in_order(tmp_path):
    config = TrainConfig(output_dir=str(tmp_path))
    save_config(config, tmp_path / "config.yaml")
    assert recipe_changes(config, tmp_path / "config.yaml") == []
    changed = dataclasses.replace(config, seed=1, lr=0.1, epochs=3, batch_per_gpu=4, progress=False)
    assert recipe_changes(changed, tmp_path / "config.yaml") == ["lr", "seed"]  # epochs and the rest may change
    recipe = [spec.name for spec in dataclasses.fields(TrainConfig) if spec.metadata.get("recipe")]
    assert {"model_type", "batch_size", "target", "precision", "seed"} <= set(recipe)
    assert not {"epochs", "batch_per_gpu", "output_dir", "checkpoint_every", "device"} & set(recipe)


def test_train_state_saves_and_loads_the_hq_parts_adam_and_counters(tmp_path):
    model = randomize_(hqsam.build_hqsam("toy"), seed=1)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    sum(p.sum() for p in model.parameters() if p.requires_grad).backward()
    optimizer.step()
    TrainState(model, optimizer, epoch=2, step_in_epoch=1, global_step=7).save(tmp_path / "last.pth")

    fresh = hqsam.build_hqsam("toy")
    fresh_optimizer = torch.optim.Adam([p for p in fresh.parameters() if p.requires_grad], lr=1e-3)
    state = TrainState(fresh, fresh_optimizer)
    state.load(tmp_path / "last.pth")
    assert (state.epoch, state.step_in_epoch, state.global_step) == (2, 1, 7)
    saved, loaded = hq_state(model), hq_state(fresh)
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    moments = [s["exp_avg"] for s in optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, (s["exp_avg"] for s in fresh_optimizer.state.values())))


def test_resumed_logs_keep_the_rows_of_the_saved_state(tmp_path):
    (tmp_path / "steps.csv").write_text("step,epoch,loss\n1,1,0.9\n2,1,0.8\n3,2,0.7\n4,2,0.6\n")
    (tmp_path / "epochs.csv").write_text("epoch,train_loss\n1,0.85\n2,0.65\n")
    model = hqsam.build_hqsam("toy")
    state = TrainState(model, torch.optim.Adam(model.parameters()), epoch=1, step_in_epoch=1, global_step=3)
    RunLogs(tmp_path, state).close()  # resumed in epoch 2 after its first step: epoch 1 is finished, step 4 was not
    assert (tmp_path / "steps.csv").read_text().splitlines()[1:] == ["1,1,0.9", "2,1,0.8", "3,2,0.7"]
    assert (tmp_path / "epochs.csv").read_text().splitlines()[1:] == ["1,0.85"]
