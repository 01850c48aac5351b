"""The engine's decode step (lmforge.generate.decode): same logits as the model's forward over the
cache, with every weight layout, eagerly and compiled."""

import copy
import warnings

import pytest
import torch

from lmforge.generate import SamplingParams, generate
from lmforge.generate import decode as decode_mod
from lmforge.generate.decode import DecodeStep
from lmforge.generate.engine import _left_pad
from lmforge.generate.kv_cache import KVCache
from tests.helpers import tiny_model

KINDS = ["t", "linear"] + (["mkldnn"] if torch.backends.mkldnn.is_available() else [])


def _prompts(vocab, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("kind", KINDS)
@torch.inference_mode()
def test_decode_step_equals_model_forward(kind):
    # Left-padded rows, and 30 steps that cross the 32-token window (dynamic NTK changes the base).
    model = tiny_model(seed=1)
    ids, mask = _left_pad(_prompts(model.cfg.vocab_size, [3, 9, 6]), model.cfg.pad_token_id, "cpu")
    ref_cache = KVCache(model.cfg, 3, ids.shape[1] + 30)
    logits = model(ids, kv_cache=ref_cache, padding_mask=mask, last_only=True)[:, -1]
    cache = copy.deepcopy(ref_cache)
    step = DecodeStep(model, cache, kind=kind)
    for _ in range(30):
        next_ids = logits.argmax(-1)
        logits = model(next_ids[:, None], kv_cache=ref_cache)[:, -1]
        got = step(next_ids)
        torch.testing.assert_close(got, logits, rtol=1e-5, atol=1e-5)
        assert torch.equal(got.argmax(-1), logits.argmax(-1))
    assert cache.length == ref_cache.length and cache.seq_len == ref_cache.seq_len
    assert torch.equal(cache.next_pos, ref_cache.next_pos)


def test_decode_weights_follow_parameter_updates(monkeypatch):
    # Weights changed in place between generations (RL rollouts between optimizer steps) are seen.
    monkeypatch.setattr(decode_mod, "PACKED_MIN_NUMEL", 0)  # the tiny matrices packed at batch 2 too
    model = tiny_model(seed=2)
    for lengths in ([5], [5, 8]):  # batch 1 ("t" copies) and batch 2 ("mkldnn" packing on CPU)
        prompts = _prompts(model.cfg.vocab_size, lengths)
        params = SamplingParams(max_new_tokens=10)
        generate(model, prompts, params)
        packs = decode_mod.packs
        generate(model, prompts, params)
        assert decode_mod.packs == packs  # unchanged weights: the copies are reused
        if len(lengths) > 1 and torch.backends.mkldnn.is_available():
            assert packs > 0
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.5)
        cached = generate(model, prompts, params)
        recomputed = generate(model, prompts, params, use_cache=False)
        assert [c.token_ids for c in cached] == [c.token_ids for c in recomputed]


def test_failed_compilation_falls_back_to_eager(monkeypatch):
    model = tiny_model(seed=3)
    prompts = _prompts(model.cfg.vocab_size, [4, 7])
    params = SamplingParams(max_new_tokens=8)
    eager = generate(model, prompts, params)

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(decode_mod, "_compiled_step", lambda: broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = generate(model, prompts, params, compile=True)
    assert any("decoding eagerly" in str(w.message) for w in caught)
    assert [c.token_ids for c in out] == [c.token_ids for c in eager]


@pytest.mark.slow
def test_compiled_decode_gives_the_eager_tokens():
    model = tiny_model(seed=4)
    params = SamplingParams(max_new_tokens=25)  # crosses the 32-token window for the longer prompts
    # batch 1 and a left-padded batch; a second call of another length reuses or recompiles the step
    for lengths in ([6], [2, 11, 6], [9, 4, 3]):
        prompts = _prompts(model.cfg.vocab_size, lengths, seed=len(lengths))
        eager = generate(model, prompts, params)
        compiled = generate(model, prompts, params, compile=True)
        assert [c.token_ids for c in compiled] == [c.token_ids for c in eager]
    assert decode_mod.compile_seconds  # compilation happened (and was timed), no eager fallback
