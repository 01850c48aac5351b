"""Save -> load in both Hugging Face formats is bit-exact; sharding and dtypes survive."""

import json

import pytest
import torch

from lmforge.model import load_model, save_model
from tests.helpers import tiny_model


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("fmt", ["internlm2", "llama"])
@pytest.mark.parametrize("ratio", [1, 2, 4])
def test_roundtrip_is_bit_exact(tmp_path, fmt, ratio):
    model = tiny_model(seed=ratio, ratio=ratio)
    save_model(model, tmp_path, fmt=fmt)
    loaded = load_model(tmp_path)
    assert loaded.cfg == model.cfg
    _assert_same_weights(model, loaded)


def test_sharded_bf16_roundtrip(tmp_path):
    model = tiny_model(seed=1).to(torch.bfloat16)
    save_model(model, tmp_path, fmt="internlm2", max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    _assert_same_weights(model, load_model(tmp_path))


def test_internlm2_layout_names(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path, fmt="internlm2")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert {"model.tok_embeddings.weight", "model.layers.0.attention.wqkv.weight", "model.layers.1.attention.wo.weight",
            "model.layers.0.feed_forward.w1.weight", "model.layers.0.feed_forward.w3.weight",
            "model.layers.0.feed_forward.w2.weight", "model.layers.0.attention_norm.weight",
            "model.layers.0.ffn_norm.weight", "model.norm.weight", "output.weight"} <= names
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["InternLM2ForCausalLM"]
    assert config["rope_scaling"]["type"] == "dynamic"


@pytest.mark.parametrize("option,message", [("smear_keys", "smear_keys: transformers' Llama has no smeared keys"),
                                            ("qk_norm", "qk_norm: transformers' Llama has no QK-norm")])
def test_options_without_a_llama_form_round_trip_and_refuse_llama(tmp_path, option, message):
    from tests.helpers import tiny_model_with

    model = tiny_model_with(option, seed=4)
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert getattr(back.cfg, option)
    _assert_same_weights(model, back)
    with pytest.raises(ValueError, match=message):
        save_model(model, tmp_path / "llama", fmt="llama")
    assert not (tmp_path / "llama").exists()
