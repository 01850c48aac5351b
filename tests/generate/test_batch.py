"""The generation engine: KV cache vs recompute, batches of mixed lengths, sampling, stops, streaming."""

import pytest
import torch

from lmforge.generate import SamplingParams, filter_logits, generate, stream
from tests.helpers import tiny_model


def _prompts(vocab, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("ratio", [1, 2, 4])
def test_kv_cache_equals_recompute(ratio):
    model = tiny_model(seed=ratio, ratio=ratio)
    prompts = _prompts(model.cfg.vocab_size, [5, 9, 3])
    params = SamplingParams(max_new_tokens=20)  # stays inside the 32-token window
    cached = generate(model, prompts, params)
    recomputed = generate(model, prompts, params, use_cache=False)
    assert [c.token_ids for c in cached] == [c.token_ids for c in recomputed]
    assert all(len(c.token_ids) == 20 and c.finish_reason == "length" for c in cached)


def test_kv_cache_equals_recompute_beyond_the_window():
    # Prompts longer than the 32-token window: dynamic NTK sets the base from the prefill on, and
    # the cache must compute it as a full forward over the whole sequence does.
    model = tiny_model(seed=11)
    prompts = _prompts(model.cfg.vocab_size, [40, 9, 33], seed=2)
    params = SamplingParams(max_new_tokens=12)
    cached = generate(model, prompts, params)
    recomputed = generate(model, prompts, params, use_cache=False)
    assert [c.token_ids for c in cached] == [c.token_ids for c in recomputed]


def test_mixed_length_batch_equals_each_prompt_alone():
    model = tiny_model(seed=4)
    prompts = _prompts(model.cfg.vocab_size, [2, 11, 6], seed=1)
    params = SamplingParams(max_new_tokens=15)
    batched = generate(model, prompts, params)
    alone = [generate(model, [p], params)[0] for p in prompts]
    assert [c.token_ids for c in batched] == [c.token_ids for c in alone]


def test_sampling_is_seeded_and_same_with_and_without_cache():
    model = tiny_model(seed=5)
    prompts = _prompts(model.cfg.vocab_size, [4, 7])
    params = SamplingParams(max_new_tokens=12, temperature=1.0, top_k=50, top_p=0.9, seed=123)
    a = generate(model, prompts, params)
    b = generate(model, prompts, params)
    c = generate(model, prompts, params, use_cache=False)
    assert [x.token_ids for x in a] == [x.token_ids for x in b] == [x.token_ids for x in c]
    # Row i samples with seed + i: alone, it draws what it drew in the batch.
    assert generate(model, prompts[1:], SamplingParams(**{**vars(params), "seed": 124}))[0].token_ids == a[1].token_ids


def test_finished_rows_leave_the_batch_and_the_others_go_on():
    model = tiny_model(seed=10)
    prompts = _prompts(model.cfg.vocab_size, [4, 7, 5], seed=3)
    free = generate(model, prompts, SamplingParams(max_new_tokens=12))
    stop_at = free[1].token_ids[2]  # row 1 stops early; the others are unaffected
    out = generate(model, prompts, SamplingParams(max_new_tokens=12, stop_token_ids=(stop_at,)))
    for f, o in zip(free, out):
        cut = f.token_ids.index(stop_at) if stop_at in f.token_ids else len(f.token_ids)
        assert o.token_ids == f.token_ids[:cut]
    assert out[1].finish_reason == "stop"


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[True, True, False, False, False]]
    # Nucleus: the smallest set reaching 0.8 is {0.5, 0.2, 0.15}.
    kept = torch.isfinite(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[True, True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_p=0.01))  # the top token always survives
    assert kept.tolist() == [[True, False, False, False, False]]


def test_stop_token_ends_a_row_without_being_returned():
    model = tiny_model(seed=6)
    prompt = _prompts(model.cfg.vocab_size, [6])[0]
    free = generate(model, [prompt], SamplingParams(max_new_tokens=10))[0].token_ids
    stop_at = free[4]
    out = generate(model, [prompt], SamplingParams(max_new_tokens=10, stop_token_ids=(stop_at,)))[0]
    assert out.finish_reason == "stop"
    assert out.token_ids == free[: free.index(stop_at)]


class CharTokenizer:
    """Each id decodes to one character: enough to test stop strings and streaming."""

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(ord("a") + i % 26) for i in ids)


def test_stop_strings_and_stream_hold_back():
    model = tiny_model(seed=7)
    tok = CharTokenizer()
    prompt = _prompts(model.cfg.vocab_size, [6])[0]
    full = generate(model, [prompt], SamplingParams(max_new_tokens=12), tok)[0]
    stop = full.text[5:7]
    events = list(stream(model, [prompt], SamplingParams(max_new_tokens=12, stop_strings=(stop,)), tok))
    text = "".join(e.text for e in events)
    assert text == full.text[: full.text.find(stop)]
    assert events[-1].finish_reason == "stop"
    assert stop not in text


def test_streamed_text_equals_final_text():
    model = tiny_model(seed=8)
    tok = CharTokenizer()
    prompts = _prompts(model.cfg.vocab_size, [3, 8])
    events = list(stream(model, prompts, SamplingParams(max_new_tokens=9), tok))
    for i in range(2):
        mine = [e for e in events if e.index == i]
        assert "".join(e.text for e in mine) == tok.decode([e.token_id for e in mine])
        assert mine[-1].finish_reason == "length"


def test_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="at least one token"):
        generate(tiny_model(), [[]], SamplingParams(max_new_tokens=2))
