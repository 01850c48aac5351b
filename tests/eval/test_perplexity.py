"""Held-out perplexity: the numbers against a direct computation, buckets, held-out text."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.eval.perplexity import heldout_text, perplexity, position_buckets


def test_position_buckets():
    assert position_buckets(256) == [(0, 64), (64, 128), (128, 256)]
    assert position_buckets(100) == [(0, 64), (64, 100)]
    assert position_buckets(32) == [(0, 32)]


def test_perplexity_matches_direct_computation(tokenizer, tiny_model):
    text = heldout_text("en", 20_000)
    r = perplexity(tiny_model, tokenizer, text, window=64, max_windows=3)
    ids = tokenizer.encode(text)[:192]
    losses = []
    for w in range(3):
        x = torch.tensor([[tokenizer.bos_id] + ids[64 * w:64 * (w + 1)]])
        with torch.no_grad():
            logits = tiny_model(x[:, :-1])
        losses.append(F.cross_entropy(logits[0], x[0, 1:], reduction="none"))
    nll = torch.stack(losses)
    assert r["tokens"] == 192 and r["windows"] == 3
    assert r["loss"] == pytest.approx(float(nll.mean()), rel=1e-5)
    assert r["ppl"] == pytest.approx(math.exp(float(nll.mean())), rel=1e-5)
    assert r["by_position"]["0-63"] == pytest.approx(float(nll.mean()), rel=1e-5)
    n_bytes = len(tokenizer.decode(ids).encode())
    assert r["bits_per_byte"] == pytest.approx(float(nll.sum()) / math.log(2) / n_bytes, rel=1e-5)


def test_heldout_text_is_the_end_of_each_corpus():
    en, zh = heldout_text("en", 5000), heldout_text("zh", 5000)
    assert len(en) == 5000 and len(zh) == 5000
    assert sum("\u4e00" <= c <= "\u9fff" for c in zh) > 2000
    with pytest.raises(ValueError, match="expected 'en' or 'zh'"):
        heldout_text("fr")


def test_too_short_text_is_refused(tokenizer, tiny_model):
    with pytest.raises(ValueError, match="fewer than one window"):
        perplexity(tiny_model, tokenizer, "short", window=64)
