"""A broken checkpoint directory fails with a message naming the file and the tensor or key."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lmforge.model import CheckpointError, load_model, save_model
from tests.helpers import tiny_model


@pytest.fixture
def sharded(tmp_path):
    save_model(tiny_model(), tmp_path, fmt="internlm2", max_shard_bytes=30_000)
    return tmp_path


def test_missing_shard(sharded):
    victim = sorted(sharded.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=victim.name):
        load_model(sharded)


def test_wrong_tensor_shape(tmp_path):
    save_model(tiny_model(), tmp_path)
    f = tmp_path / "model.safetensors"
    sd = load_file(f)
    sd["model.layers.1.feed_forward.w2.weight"] = torch.zeros(64, 100)
    save_file(sd, f)
    with pytest.raises(CheckpointError, match=r"model/|layers\.1\.feed_forward\.w2\.weight.*\(64, 100\)"):
        load_model(tmp_path)


def test_unknown_config_key(tmp_path):
    save_model(tiny_model(), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["sliding_window"] = 4096
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json.*sliding_window"):
        load_model(tmp_path)


def test_missing_tensor_and_unsupported_rope(tmp_path):
    save_model(tiny_model(), tmp_path)
    f = tmp_path / "model.safetensors"
    sd = load_file(f)
    del sd["model.norm.weight"]
    save_file(sd, f)
    with pytest.raises(CheckpointError, match="norm.weight"):
        load_model(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["rope_scaling"] = {"type": "yarn", "factor": 4.0}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="yarn"):
        load_model(tmp_path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(tmp_path)
