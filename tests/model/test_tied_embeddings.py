"""Tied embeddings (`model.tie_embeddings`): the head is the embedding matrix, in training (one
parameter, gradients from both uses), through export (stored once, `tie_word_embeddings: true`) and
through transformers' Llama in both directions; contradictory settings are refused."""

import json

import pytest
import torch
from safetensors import safe_open

from lmforge.model import ModelConfig, load_model, num_params, save_model
from lmforge.model.hf import CheckpointError
from lmforge.train.optim import build_optimizer
from tests.helpers import tiny_config, tiny_model

transformers = pytest.importorskip("transformers")


def test_one_matrix_whose_gradient_is_the_sum_of_its_two_uses():
    tied = tiny_model(seed=1, tie_embeddings=True).train()
    assert tied.output.weight is tied.tok_embeddings.weight
    assert tied.num_params() == num_params(tied.cfg) == tiny_model().num_params() - 300 * 64
    untied = tiny_model(seed=1).train()
    untied.load_state_dict(tied.state_dict())  # the same values, in two matrices
    assert untied.output.weight is not untied.tok_embeddings.weight
    x, y = torch.randint(3, 300, (2, 12)), torch.randint(3, 300, (2, 12))
    for model in (tied, untied):
        model(x, targets=y)[0].backward()
    torch.testing.assert_close(tied.tok_embeddings.weight.grad,
                               untied.tok_embeddings.weight.grad + untied.output.weight.grad)


def test_an_optimizer_step_keeps_them_one():
    model = tiny_model(tie_embeddings=True).train()
    opt = build_optimizer(model, "adamw", lr=1e-2)
    x = torch.randint(3, 300, (2, 12))
    model(x, targets=x)[0].backward()
    before = model.tok_embeddings.weight.detach().clone()
    opt.step()
    assert not torch.equal(model.tok_embeddings.weight, before)
    assert model.output.weight is model.tok_embeddings.weight
    with pytest.raises(ValueError, match="one tied matrix"):
        build_optimizer(model, "adamw", lr=1e-2, head_lr_scale=3.0)


def test_llama_export_stores_the_matrix_once_and_transformers_reads_it(tmp_path):
    model = tiny_model(seed=2, tie_embeddings=True)
    save_model(model, tmp_path, fmt="llama")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["tie_word_embeddings"] is True
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        assert "lm_head.weight" not in f.keys() and "model.embed_tokens.weight" in f.keys()
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    x = torch.randint(0, 300, (2, 40))
    with torch.no_grad():
        assert (model(x) - hf(x).logits).abs().max().item() <= 1e-5
    back = load_model(tmp_path)
    assert back.cfg.tie_embeddings and back.output.weight is back.tok_embeddings.weight


def test_a_tied_transformers_llama_loads(tmp_path):
    cfg = tiny_config()
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, tie_word_embeddings=True)).eval()
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    assert ours.cfg.tie_embeddings and ours.output.weight is ours.tok_embeddings.weight
    x = torch.randint(0, cfg.vocab_size, (2, 20))
    with torch.no_grad():
        assert (ours(x) - hf(x).logits).abs().max().item() <= 1e-5


def test_a_tied_config_over_a_different_head_is_refused(tmp_path):
    save_model(tiny_model(seed=3), tmp_path)  # untied: the file holds a head of its own
    config = json.loads((tmp_path / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="tie_word_embeddings is true but the output head differs"):
        load_model(tmp_path)


def test_norm_head_with_tied_embeddings_is_refused():
    with pytest.raises(ValueError, match="norm_head with tie_embeddings"):
        ModelConfig(norm_head=True, tie_embeddings=True)
