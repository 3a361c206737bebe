"""Mistakes on the `hqsam` command line (a wrong key, value, type or path) end in one `error:` line and exit
status 2, and `hqsam --debug` shows their traceback; nothing is trained or evaluated."""

import re

import pytest

from hqsam.cli import main
from hqsam.toy import generate_toy_world
from hqsam.train import load_config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_toy_world(tmp_path_factory.mktemp("toy"), num_train=0, num_val=1)


def mistakes(tmp_path, world):
    """Each mistake as (`hqsam` arguments, words the error line must hold)."""
    return {
        "epochs=one": (["train", "--config", "toy", "epochs=one"], ["epochs must be an integer", "'one'", "epochs=12"]),
        "epoch=2": (["train", "--config", "toy", "epoch=2"], ["'epoch'", "did you mean 'epochs'?"]),
        "lr=fast": (["train", "--config", "toy", "lr=fast"], ["lr must be a number", "'fast'"]),
        "missing config": (["train", "--config", str(tmp_path / "nofile.yaml")], ["nofile.yaml", "use a profile"]),
        "prompt_kinds": (["train", "--config", "toy", "prompt_kinds=[box, nothing]"], ["prompt_kinds", "nothing"]),
        "missing checkpoint": (
            ["eval", "hq", "--checkpoint", str(tmp_path / "missing.pth"), "--data-root", str(world), "--layout", "toy",
             "--output", str(tmp_path / "out"), "--device", "cpu"],
            ["missing.pth does not exist", "hqsam download"],
        ),
    }


@pytest.mark.parametrize(
    "mistake", ["epochs=one", "epoch=2", "lr=fast", "missing config", "prompt_kinds", "missing checkpoint"]
)
def test_a_mistake_is_one_line_and_exit_status_2(world, tmp_path, capsys, mistake):
    arguments, words = mistakes(tmp_path, world)[mistake]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err
    assert all(word in err for word in words), err
    with pytest.raises((ValueError, FileNotFoundError)):
        main(["--debug", *arguments])


def test_values_are_read_as_their_fields_types(tmp_path):
    config = load_config("toy", ["lr=1e-3", "batch_per_gpu=null", "weight_decay=0", "scale_range=[1, 2]"])
    assert config.lr == 0.001 and isinstance(config.lr, float) and config.batch_per_gpu is None
    assert isinstance(config.weight_decay, float) and config.scale_range == (1.0, 2.0)
    for override, message in [("epochs=true", "epochs must be an integer, got True"),
                              ("cache_embeddings=1", "cache_embeddings must be a boolean"),
                              ("betas=[0.9]", "betas must be a list of 2 numbers"),
                              ("train_sources=abc", "train_sources must be a list of strings or null"),
                              ("extra_sources=[1]", "extra_sources must be a list of mappings"),
                              ("epochs=[1,", "not valid YAML")]:
        with pytest.raises(ValueError, match=message):
            load_config("toy", [override])
    with pytest.raises(ValueError, match="epochs must be .*; lr must be"):  # every wrong field at once
        load_config("toy", ["epochs=one", "lr=fast"])


def test_unknown_keys_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("epoch: 2\nzzzz: 1\n")
    expected = f"'epoch' in {re.escape(str(path))}: did you mean 'epochs'.*'zzzz'.*the known keys are profile, "
    with pytest.raises(ValueError, match=expected):
        load_config(path)
