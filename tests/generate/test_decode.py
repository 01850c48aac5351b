"""The engine's decode step (lmforge.generate.decode): same logits as the model's forward over the
cache, with every weight layout (lmforge.model.linear), eagerly and compiled."""

import copy
import warnings

import pytest
import torch

from lmforge.generate import SamplingParams, generate
from lmforge.generate import decode as decode_mod
from lmforge.generate.decode import DecodeStep
from lmforge.generate.batch import _right_pad
from lmforge.generate.kv_cache import KVCache
from lmforge.model import linear as linear_mod
from tests.helpers import tiny_model

KINDS = ["t", "linear"] + (["mkldnn"] if torch.backends.mkldnn.is_available() else [])


def _prompts(vocab, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("kind", KINDS)
@torch.inference_mode()
def test_decode_step_equals_model_forward(kind):
    # Rows of different lengths, and 30 steps that cross the 32-token window (dynamic NTK changes the base).
    model = tiny_model(seed=1)
    ids, mask = _right_pad(_prompts(model.cfg.vocab_size, [3, 9, 6]), model.cfg.pad_token_id, "cpu")
    ref_cache = KVCache(model.cfg, 3, ids.shape[1] + 30)
    hidden = model.forward_hidden(ids, kv_cache=ref_cache, padding_mask=mask)
    logits = model.logits(hidden[torch.arange(3), mask.sum(1) - 1])
    cache = copy.deepcopy(ref_cache)
    step = DecodeStep(model, cache, kernel=kind)
    assert set(step.kernels) == {kind}
    for _ in range(30):
        next_ids = logits.argmax(-1)
        logits = model(next_ids[:, None], kv_cache=ref_cache)[:, -1]
        got = step(next_ids)
        torch.testing.assert_close(got, logits, rtol=1e-5, atol=1e-5)
        assert torch.equal(got.argmax(-1), logits.argmax(-1))
    assert cache.row_lengths == ref_cache.row_lengths == [3 + 30, 9 + 30, 6 + 30]
    assert torch.equal(cache.lengths, ref_cache.lengths)


def test_kernels_are_used_only_inside_the_decode_step():
    # The prepared copies are a decode-step matter: a forward outside it (training, scoring) reads
    # the parameters, even after their values changed.
    model = tiny_model(seed=9)
    linear_mod.prepare_kernels(model, batch=1, kernel="t")
    layer = model.layers[0].attention.wqkv
    assert layer.kernel == "t" and layer.kernel_weight is not None
    x = torch.randn(2, 5, model.cfg.dim)
    with torch.no_grad():
        layer.weight.mul_(2.0)
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight))
        with linear_mod.kernels_enabled():
            stale = layer(x)  # the copy is from before the change; prepare_kernels would refresh it
            assert not torch.allclose(stale, torch.nn.functional.linear(x, layer.weight))
    with linear_mod.kernels_enabled():  # with gradients: always the parameter
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight))


def test_decode_weights_follow_parameter_updates(monkeypatch):
    # Weights changed in place between generations (RL rollouts between optimizer steps) are seen.
    monkeypatch.setattr(linear_mod, "PACKED_MIN_NUMEL", 0)  # the tiny matrices packed at batch 2 too
    model = tiny_model(seed=2)
    for lengths in ([5], [5, 8]):  # batch 1 ("t" copies) and batch 2 ("mkldnn" packing on CPU)
        prompts = _prompts(model.cfg.vocab_size, lengths)
        params = SamplingParams(max_new_tokens=10)
        generate(model, prompts, params)
        packs = linear_mod.packs
        generate(model, prompts, params)
        assert linear_mod.packs == packs  # unchanged weights: the copies are reused
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
    # batch 1 and batches of mixed lengths; a second call of another length reuses or recompiles the step
    for lengths in ([6], [2, 11, 6], [9, 4, 3]):
        prompts = _prompts(model.cfg.vocab_size, lengths, seed=len(lengths))
        eager = generate(model, prompts, params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compiled = generate(model, prompts, params, compile=True)
        assert not [w for w in caught if "decoding eagerly" in str(w.message)], lengths  # compiled throughout
        assert [c.token_ids for c in compiled] == [c.token_ids for c in eager]
    # Rows that stop early leave the batch: the compiled step meets a smaller batch mid-generation.
    prompts = _prompts(model.cfg.vocab_size, [5, 8, 3], seed=7)
    free = generate(model, prompts, params)
    stopping = SamplingParams(max_new_tokens=25, stop_token_ids=(free[1].token_ids[3], free[0].token_ids[9]))
    eager = generate(model, prompts, stopping)
    compiled = generate(model, prompts, stopping, compile=True)
    assert [c.token_ids for c in compiled] == [c.token_ids for c in eager]
    assert len({len(c.token_ids) for c in eager}) > 1
    assert decode_mod.compile_seconds  # compilation happened (and was timed), no eager fallback
