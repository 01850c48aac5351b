"""Smeared keys (`model.smear_keys`, Olsson et al. 2022): the formula, packed documents kept apart,
and every cache layout (generation, the paged engine; the scoring trie in
tests/eval/test_loglikelihood.py) computing what a plain
forward computes; the option survives export and Llama format refuses it."""

import json

import pytest
import torch

from lmforge.generate import Engine, SamplingParams, generate
from lmforge.model import InternLM2, load_model, num_params, save_model
from lmforge.model.model import smear_keys
from tests.helpers import tiny_model


def smeared(seed: int = 0, **kw) -> InternLM2:
    """A tiny smeared-key model whose gates differ per head and layer (init leaves them at 0)."""
    model = tiny_model(seed=seed, smear_keys=True, **kw)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for layer in model.layers:
            layer.attention.smear.copy_(2 * torch.randn(layer.attention.smear.shape, generator=g))
    return model


def test_the_formula_in_each_of_its_three_forms():
    g = torch.Generator().manual_seed(0)
    k, gate = torch.randn(2, 3, 6, 4, generator=g), torch.randn(3, generator=g)
    s = torch.sigmoid(gate)[:, None]

    def by_hand(prev_of):
        out = torch.empty_like(k)
        for b in range(2):
            for h in range(3):
                for i in range(6):
                    p = prev_of(b, i)
                    out[b, h, i] = s[h] * k[b, h, i] + (1 - s[h]) * (k[b, h, p] if p >= 0 else 0)
        return out

    torch.testing.assert_close(smear_keys(k, gate, None), by_hand(lambda b, i: i - 1))
    starts = torch.tensor([[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 0, 1]], dtype=torch.bool)  # True: i - 1 precedes
    after = starts.clone()
    after[:, 0] = False
    torch.testing.assert_close(smear_keys(k, gate, after),
                               by_hand(lambda b, i: i - 1 if bool(after[b, i]) else -1))
    parents = torch.tensor([[-1, 0, 0, 2, -1, 4], [-1, 0, 1, 1, 1, 0]])
    torch.testing.assert_close(smear_keys(k, gate, parents), by_hand(lambda b, i: int(parents[b, i])))


def test_packed_documents_do_not_smear_into_each_other():
    model = smeared()
    a, b = torch.randint(3, 200, (1, 7)), torch.randint(3, 200, (1, 9))
    packed = model(torch.cat([a, b], 1), document_ids=torch.tensor([[0] * 7 + [1] * 9]))
    torch.testing.assert_close(packed[:, :7], model(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(packed[:, 7:], model(b), atol=1e-5, rtol=0)


def test_the_gate_is_learned_and_starts_at_an_even_mix():
    model = tiny_model(smear_keys=True)
    assert all(float(layer.attention.smear.detach().abs().max()) == 0 for layer in model.layers)
    loss, _ = model.train()(torch.randint(3, 200, (2, 12)), targets=torch.randint(3, 200, (2, 12)))
    loss.backward()
    assert all(float(layer.attention.smear.grad.abs().max()) > 0 for layer in model.layers)
    plain = tiny_model()
    assert not any("smear" in n for n, _ in plain.named_parameters())
    assert model.num_params() == num_params(model.cfg) == plain.num_params() + 2 * 2  # a gate per kv head


def _prompts(vocab, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def test_generation_with_the_cache_equals_recompute():
    model = smeared(seed=1)
    prompts = _prompts(model.cfg.vocab_size, [5, 11, 2])  # mixed lengths: the ragged prefill as well
    params = SamplingParams(max_new_tokens=16)
    cached = [c.token_ids for c in generate(model, prompts, params)]
    assert cached == [c.token_ids for c in generate(model, prompts, params, use_cache=False)]
    assert cached == [generate(model, [p], params)[0].token_ids for p in prompts]


def test_a_packed_prefill_and_the_decode_batch_compute_each_sequence_alone():
    # Several prompts packed into one row, two of them after cached tokens, then decode steps:
    # logits equal to a plain forward over each sequence alone (a key smeared across two prompts,
    # or from the wrong cached token, would not be).
    from lmforge.generate.paged import DecodeBatch, KVPool, PackedPrefill

    model = smeared(seed=5)
    seqs = _prompts(model.cfg.vocab_size, [7, 12, 5], seed=6)
    pool = KVPool(model.cfg, n_blocks=16, block_size=4)
    tables = [[pool.blocks.allocate() for _ in range(4)] for _ in seqs]
    cached = [0, 5, 2]
    with torch.no_grad():
        for first, todo in ((True, [3, 5, 2]), (False, None)):  # the prefixes, then the rest
            counts = todo or [len(s) - c for s, c in zip(seqs, cached)]
            starts = [0, 0, 0] if first else cached
            row = [t for s, a, n in zip(seqs, starts, counts) for t in s[a:a + n]]
            h = model.forward_hidden(torch.tensor([row]), kv_cache=PackedPrefill(pool, tables, starts, counts))
            if first:
                cached = [a + n for a, n in zip(starts, counts)]
        ends = torch.tensor(counts).cumsum(0) - 1
        want = torch.stack([model(torch.tensor([s]))[0, -1] for s in seqs])
        torch.testing.assert_close(model.logits(h[0, ends]), want, atol=1e-5, rtol=0)
        nxt = [[3], [4], [5]]
        batch = DecodeBatch(pool, tables, [len(s) for s in seqs], capacity=16)
        h = model.forward_hidden(torch.tensor(nxt), kv_cache=batch)
        want = torch.stack([model(torch.tensor([s + n]))[0, -1] for s, n in zip(seqs, nxt)])
        torch.testing.assert_close(model.logits(h[:, -1]), want, atol=1e-5, rtol=0)


def test_the_paged_engine_equals_generate():
    model = smeared(seed=2)
    prompts = _prompts(model.cfg.vocab_size, [3, 9, 6, 12], seed=3)
    prompts[3][:6] = prompts[1][:6]  # a shared prefix: a prefill that continues cached blocks
    params = SamplingParams(max_new_tokens=10)
    ref = [c.token_ids for c in generate(model, prompts, params, use_cache=False)]
    engine = Engine(model, kv_blocks=64, block_size=4, max_batch=3)
    reqs = [engine.add(p, params) for p in prompts[:2]]
    got: dict = {}
    step = 0
    while engine.has_work() or step < 3:
        if step == 2:
            reqs += [engine.add(p, params) for p in prompts[2:]]
        for ev in engine.step():
            if ev.token_id is not None:
                got.setdefault(ev.request_id, []).append(ev.token_id)
        step += 1
    assert [got[r.id] for r in reqs] == ref


@torch.inference_mode()
def test_the_decode_step_over_all_slots_equals_a_plain_forward():
    # generate's decode step (lmforge.generate.decode) attends over every slot of the cache, rows of
    # different lengths included: logits equal to a cacheless forward over each whole sequence.
    from lmforge.generate.batch import _right_pad
    from lmforge.generate.decode import DecodeStep
    from lmforge.generate.kv_cache import KVCache

    model = smeared(seed=8)
    seqs = _prompts(model.cfg.vocab_size, [3, 9, 6], seed=9)
    ids, mask = _right_pad(seqs, model.cfg.pad_token_id, "cpu")
    cache = KVCache(model.cfg, 3, ids.shape[1] + 8)
    hidden = model.forward_hidden(ids, kv_cache=cache, padding_mask=mask)
    logits = model.logits(hidden[torch.arange(3), mask.sum(1) - 1])
    step = DecodeStep(model, cache)
    for _ in range(8):
        nxt = logits.argmax(-1)
        seqs = [s + [int(t)] for s, t in zip(seqs, nxt)]
        logits = step(nxt)
        want = torch.stack([model(torch.tensor([s]))[0, -1] for s in seqs])
        torch.testing.assert_close(logits, want, atol=1e-5, rtol=0)


def test_a_checkpoint_whose_smear_keys_is_not_a_boolean_is_refused(tmp_path):
    from lmforge.model.hf import CheckpointError

    save_model(smeared(), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["lmforge"]["smear_keys"] = "no"  # truthy: it would silently mean yes
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: invalid model config: smear_keys='no' must be true or false"):
        load_model(tmp_path / "m")
