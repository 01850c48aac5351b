"""Shared fixtures for the evaluation tests: a tiny BPE, tiny models, an exported checkpoint."""

import pytest
import torch

from lmforge.corpora import english_text
from lmforge.eval.lm import LmforgeLM
from lmforge.model import InternLM2, ModelConfig, save_model
from lmforge.tokenizer import train_bpe


@pytest.fixture(scope="session")
def tokenizer():
    return train_bpe([english_text(200_000)], vocab_size=1000)


def make_model(tokenizer, seed: int = 0, **kw) -> InternLM2:
    cfg = dict(vocab_size=tokenizer.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=160,
               rope_theta=10_000.0, rope_scaling="dynamic", rope_scaling_factor=2.0, max_seq_len=256,
               bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
    cfg.update(kw)
    model = InternLM2(ModelConfig(**cfg))
    model.init_weights(seed)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    torch.manual_seed(0)
    return make_model(tokenizer)


@pytest.fixture(scope="session")
def tiny_lm(tokenizer, tiny_model):
    return LmforgeLM(tiny_model, tokenizer, name="tiny")


@pytest.fixture(scope="session")
def llama_checkpoint(tmp_path_factory, tokenizer, tiny_model):
    """The tiny model in the Hugging Face Llama format, with its tokenizer beside it."""
    out = tmp_path_factory.mktemp("llama")
    save_model(tiny_model, out, fmt="llama")
    tokenizer.save(out)
    return out
