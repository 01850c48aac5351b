"""Residual dropout (`model.dropout`): active in training mode only, reproducible from the seed, exact
under activation checkpointing, not exported with the weights, and off for validation."""

import pytest
import torch

from lmforge.model import ModelConfig, load_model, save_model
from tests.helpers import tiny_model


def _ids(vocab, B=2, T=16):
    return torch.randint(3, vocab, (B, T), generator=torch.Generator().manual_seed(0))


def test_dropout_is_checked():
    with pytest.raises(ValueError, match=r"dropout=1.0 must be in \[0, 1\)"):
        ModelConfig(dropout=1.0)


def test_eval_mode_ignores_dropout_and_training_mode_applies_it():
    plain, dropped = tiny_model(seed=1), tiny_model(seed=1, dropout=0.3)
    ids = _ids(plain.cfg.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(dropped(ids), plain(ids), rtol=0, atol=0)  # both in eval mode
        dropped.train()
        torch.manual_seed(0)
        a = dropped(ids)
        torch.manual_seed(0)
        b = dropped(ids)
        torch.manual_seed(1)
        c = dropped(ids)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # the masks follow the seed
    assert (a - plain(ids)).abs().max() > 1e-2 and (a - c).abs().max() > 1e-2


def test_dropout_is_exact_under_activation_checkpointing():
    from lmforge.train.parallel import apply_activation_checkpointing

    ids = _ids(256)
    grads = []
    for mode in ("none", "blocks"):
        model = tiny_model(seed=2, dropout=0.2).train()
        if mode != "none":
            apply_activation_checkpointing(model, mode)
        torch.manual_seed(3)
        loss, _ = model(ids[:, :-1], targets=ids[:, 1:])
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)


def test_dropout_is_not_exported(tmp_path):
    model = tiny_model(seed=4, dropout=0.25)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.cfg.dropout == 0.0 and all(layer.dropout == 0.0 for layer in loaded.layers)
