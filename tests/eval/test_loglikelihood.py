"""The packed prefix-tree scorer computes exactly what one plain forward per request computes."""

import random

import pytest
import torch

from lmforge.corpora import english_text
from lmforge.eval.loglikelihood import encode_requests, loglikelihood, split_pair
from tests.eval.conftest import make_model


def reference(model, encoded, max_length):
    """One plain forward per request, truncated on the left as lm-eval does."""
    out = []
    for ctx, cont in encoded:
        full = (ctx + cont)[-(max_length + 1):]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([full[:-1]])).float()[0], -1)[-len(cont):]
        target = torch.tensor(full[-len(cont):])
        out.append((logprobs.gather(1, target[:, None]).sum().item(), bool((logprobs.argmax(-1) == target).all())))
    return out


def random_requests(n_items, seed=0, max_context=600):
    text = english_text(60_000)
    rng = random.Random(seed)
    requests = []
    for _ in range(n_items):
        a = rng.randrange(len(text) - 1000)
        context = text[a:a + rng.randrange(0, max_context)]
        for j in range(4):
            b = rng.randrange(len(text) - 100)
            requests.append((context + (" " if j == 1 else ""), text[b:b + rng.randrange(1, 50)]))
    requests.append(requests[0])  # a duplicate is computed once and answered twice
    return requests


@pytest.mark.parametrize("max_length", [64, 400])
def test_matches_one_forward_per_request(tokenizer, max_length):
    # max_length 64: most requests truncated; 400: some longer than the 256-token window, so
    # dynamic NTK applies and those run alone.
    model = make_model(tokenizer, seed=1)
    requests = random_requests(6, seed=max_length)
    ours = loglikelihood(model, tokenizer, requests, max_length=max_length, row_tokens=128, batch_tokens=512)
    ref = reference(model, encode_requests(tokenizer, requests), max_length)
    for (ll, greedy), (ll_ref, greedy_ref) in zip(ours, ref):
        assert ll == pytest.approx(ll_ref, abs=1e-4)
        assert greedy == greedy_ref


def test_batching_does_not_change_results(tokenizer, tiny_model):
    requests = random_requests(6, seed=3, max_context=300)
    a = loglikelihood(tiny_model, tokenizer, requests, row_tokens=64, batch_tokens=64)
    b = loglikelihood(tiny_model, tokenizer, requests[::-1], row_tokens=512, batch_tokens=8192)[::-1]
    assert [x for x, _ in a] == pytest.approx([x for x, _ in b], abs=1e-5)


def test_tokenisation_follows_lm_eval(tokenizer):
    assert split_pair("Answer: ", "B") == ("Answer:", " B")
    (ctx, cont), (ctx2, cont2) = encode_requests(tokenizer, [("Question: x\nAnswer:", " Paris"), ("", "Paris")])
    assert ctx[0] == tokenizer.bos_id
    assert ctx + cont == [tokenizer.bos_id, *tokenizer.encode("Question: x\nAnswer: Paris")]
    assert ctx2 == [tokenizer.bos_id] and cont2 == tokenizer.encode("Paris")


def test_greedy_continuation_is_recognised(tokenizer, tiny_model):
    prompt = tokenizer.encode("To be, or not to be", add_bos=True)
    with torch.no_grad():
        nxt = int(tiny_model(torch.tensor([prompt]))[0, -1].argmax())
    other = (nxt + 1) % tokenizer.vocab_size
    [(_, greedy), (_, not_greedy)] = loglikelihood(tiny_model, tokenizer, [
        ("To be, or not to be", tokenizer.decode([nxt])), ("To be, or not to be", tokenizer.decode([other]))])
    # Decoding then re-encoding a single token can merge differently; only assert when it round-trips.
    if tokenizer.encode("To be, or not to be" + tokenizer.decode([nxt]))[-1] == nxt:
        assert greedy
    assert not not_greedy or other == nxt


def test_shared_few_shot_prefixes_and_choice_prefixes(tokenizer):
    # MMLU-like: one long few-shot prefix shared by every item, and choices that share their
    # first words, so the trie merges both; each request must still score as if alone.
    model = make_model(tokenizer, seed=2)
    text = english_text(20_000)
    prefix = text[:400] + "\n\n"
    requests = [(prefix + text[1000 + 90 * i:1060 + 90 * i] + "\nAnswer:", c)
                for i in range(5) for c in (" the end of it", " the end", " the start", " A")]
    ref = reference(model, encode_requests(tokenizer, requests), model.cfg.max_seq_len)
    for row_tokens in (64, 2048):
        ours = loglikelihood(model, tokenizer, requests, row_tokens=row_tokens)
        assert [x for x, _ in ours] == pytest.approx([x for x, _ in ref], abs=1e-4)
        assert [g for _, g in ours] == [g for _, g in ref]


def test_smeared_keys_follow_the_trie_to_each_token_s_parent(tokenizer):
    # model.smear_keys mixes into each key the key of the token before it, which in a trie is the
    # parent's column, and, after a cached shared prefix, the prefix's last key.
    model = make_model(tokenizer, seed=3, smear_keys=True)
    with torch.no_grad():
        for layer in model.layers:
            layer.attention.smear.normal_(0, 2)
    shots = "The first example.\nThe second one.\n\n"
    requests = [(shots + f"Question {i}: which?\nAnswer:", c) for i in range(3)
                for c in (" the end of it", " the end", " A")]
    ref = reference(model, encode_requests(tokenizer, requests), model.cfg.max_seq_len)
    for row_tokens in (32, 2048):  # short rows: a shared prefix cached once; long: one trie per row
        ours = loglikelihood(model, tokenizer, requests, row_tokens=row_tokens)
        assert [x for x, _ in ours] == pytest.approx([x for x, _ in ref], abs=1e-4)
