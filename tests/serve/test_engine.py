"""The continuous-batching engine on a paged KV cache: the tokens of `generate`, whatever joins or
leaves the batch, a budget too small for everyone, the prefix cache, cancellation, sampling."""

import math

import pytest
import torch

from lmforge.generate import Engine, SamplingParams, generate
from lmforge.generate.blocks import BlockManager, OutOfBlocks, block_hashes
from lmforge.generate.sampling import penalize_repetition
from tests.helpers import tiny_model


def _prompts(vocab, lengths, seed=0, prefix=()):
    g = torch.Generator().manual_seed(seed)
    return [list(prefix) + torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def _run(engine, arrivals):
    """arrivals: {step: [(prompt, params), ...]}; returns {request id: tokens} and the requests in order."""
    out, reqs, step = {}, [], 0
    while step in arrivals or engine.has_work() or step <= max(arrivals):
        reqs += [engine.add(p, params) for p, params in arrivals.get(step, [])]
        for ev in engine.step():
            if ev.token_id is not None:
                out.setdefault(ev.request_id, []).append(ev.token_id)
        step += 1
    return [out.get(r.id, []) for r in reqs], reqs


@pytest.mark.parametrize("kv_blocks", [64, 9])  # room for all; room for one or two at a time
def test_greedy_tokens_equal_generate_whatever_shares_the_batch(kv_blocks):
    model = tiny_model(seed=1)
    prompts = _prompts(model.cfg.vocab_size, [3, 9, 6, 12, 1, 15])
    params = SamplingParams(max_new_tokens=12)
    ref = [c.token_ids for c in generate(model, prompts, params)]
    engine = Engine(model, kv_blocks=kv_blocks, block_size=4, max_batch=3)
    # Two requests now, two at step 2, two at step 5: requests join and leave at every step.
    got, _ = _run(engine, {0: [(p, params) for p in prompts[:2]], 2: [(p, params) for p in prompts[2:4]],
                           5: [(p, params) for p in prompts[4:]]})
    assert got == ref
    assert engine.kv_blocks_used == 0 and not engine.running and not engine.waiting
    if kv_blocks == 9:
        assert engine.stats.preemptions > 0  # the small budget queued and preempted, and lost nothing


def test_a_shared_system_prompt_is_computed_once():
    model = tiny_model(seed=2)
    system = _prompts(model.cfg.vocab_size, [13], seed=5)[0]
    prompts = _prompts(model.cfg.vocab_size, [4, 7, 2], seed=6, prefix=system)
    params = SamplingParams(max_new_tokens=6)
    ref = [c.token_ids for c in generate(model, prompts, params)]
    engine = Engine(model, kv_blocks=64, block_size=4)
    got, _ = _run(engine, {0: [(prompts[0], params)], 3: [(p, params) for p in prompts[1:]]})
    assert got == ref
    assert engine.stats.prefix_hit_tokens == 2 * 12  # 3 full blocks of the 13-token system prompt, twice


def test_new_weights_empty_the_prefix_cache_and_an_id_can_come_back():
    model = tiny_model(seed=2)
    system = _prompts(model.cfg.vocab_size, [13], seed=5)[0]
    prompts = _prompts(model.cfg.vocab_size, [4, 7], seed=6, prefix=system)
    params = SamplingParams(max_new_tokens=6)
    engine = Engine(model, kv_blocks=64, block_size=4)
    for i, p in enumerate(prompts):
        engine.add(p, params, request_id=f"r{i}")
    list(engine.run())
    with torch.no_grad():  # an RL update between two rounds of requests
        for w in model.parameters():
            w.add_(torch.randn_like(w) * 0.05)
    engine.weights_updated()
    hits = engine.stats.prefix_hit_tokens
    for i, p in enumerate(prompts):  # the same ids again: the old running set's copy must not be reused
        engine.add(p, params, request_id=f"r{i}")
    got = {}
    for ev in engine.run():
        if ev.token_id is not None:
            got.setdefault(ev.request_id, []).append(ev.token_id)
    # No keys and values of the old weights: r1 shares only the 3 system-prompt blocks that r0
    # computes in the same step, with the new weights.
    assert engine.stats.prefix_hit_tokens - hits == 12
    assert [got[f"r{i}"] for i in range(2)] == [c.token_ids for c in generate(model, prompts, params)]


@pytest.mark.parametrize("length, kv_blocks", [(19, 64), (16, 64), (19, 14)])  # 14: preemptions
def test_copies_of_a_prompt_admitted_together_are_computed_once(length, kv_blocks):
    """A GRPO group: 8 copies of one prompt queued at once, with another prompt that shares its first
    blocks. The prompt is computed once; each copy samples what it samples alone."""
    model = tiny_model(seed=4)
    prompt = _prompts(model.cfg.vocab_size, [length])[0]
    other = prompt[:9] + _prompts(model.cfg.vocab_size, [6], seed=1)[0]  # shares 2 full blocks
    params = [SamplingParams(max_new_tokens=8, temperature=1.0, seed=s) for s in range(9)]
    alone = []
    for p, q in zip([prompt] * 8 + [other], params):
        engine = Engine(model, kv_blocks=64, block_size=4)
        alone.append(_run(engine, {0: [(p, q)]})[0][0])
    engine = Engine(model, kv_blocks=kv_blocks, block_size=4, max_batch=9)
    together, _ = _run(engine, {0: [(prompt, p) for p in params[:4]] + [(other, params[8])]
                                   + [(prompt, p) for p in params[4:8]]})
    assert together == alone[:4] + alone[8:] + alone[4:8] and not engine.pool.blocks.used
    if kv_blocks == 64:
        assert engine.stats.prefix_hit_tokens == 7 * length + 8  # 7 copies computed not at all, `other` in part
        assert engine.stats.steps == 8  # one prefill step, then 7 decode steps
    else:
        assert engine.stats.preemptions > 0


def test_cancelled_request_frees_its_blocks_and_the_others_go_on():
    model = tiny_model(seed=3)
    prompts = _prompts(model.cfg.vocab_size, [5, 8])
    params = SamplingParams(max_new_tokens=20)
    ref = generate(model, prompts[1:], params)[0].token_ids
    engine = Engine(model, kv_blocks=32, block_size=4)
    a, b = engine.add(prompts[0], params), engine.add(prompts[1], params)
    events = engine.step() + engine.step()
    engine.abort(a.id)
    events += engine.step()
    assert [e.finish_reason for e in events if e.request_id == a.id][-1] == "cancelled"
    assert engine.kv_blocks_used == math.ceil((8 + 2) / 4)  # only b's blocks are held
    events += list(engine.run())
    assert [e.token_id for e in events if e.request_id == b.id and e.token_id is not None] == ref
    assert engine.kv_blocks_used == 0


def test_seeded_sampling_is_reproducible_and_stops_are_honoured():
    model = tiny_model(seed=4)
    prompt = _prompts(model.cfg.vocab_size, [6])[0]
    params = SamplingParams(max_new_tokens=15, temperature=1.0, top_k=40, top_p=0.9, seed=7)
    runs = []
    for _ in range(2):
        engine = Engine(model, kv_blocks=32, block_size=4)
        engine.add(_prompts(model.cfg.vocab_size, [4], seed=9)[0], SamplingParams(max_new_tokens=9, temperature=1.0))
        got, _ = _run(engine, {0: [(prompt, params)]})
        runs.append(got[0])
    assert runs[0] == runs[1] and len(runs[0]) == 15
    stop = runs[0][4]
    engine = Engine(model, kv_blocks=32, block_size=4)
    got, reqs = _run(engine, {0: [(prompt, SamplingParams(**{**vars(params), "stop_token_ids": (stop,)}))]})
    assert got[0] == runs[0][:runs[0].index(stop)] and reqs[0].finish_reason == "stop"


def test_logprobs_are_the_model_distribution():
    model = tiny_model(seed=5)
    prompt = _prompts(model.cfg.vocab_size, [7])[0]
    engine = Engine(model, kv_blocks=16, block_size=4)
    engine.add(prompt, SamplingParams(max_new_tokens=3, logprobs=3))
    events = [e for e in engine.run() if e.token_id is not None]
    seq = list(prompt)
    for ev in events:
        with torch.no_grad():
            ref = torch.log_softmax(model(torch.tensor([seq]))[0, -1].double(), -1)
        assert abs(ev.choice.logprob - float(ref[ev.token_id])) < 1e-4
        assert [t for t, _ in ev.choice.top] == ref.topk(3).indices.tolist()
        seq.append(ev.token_id)


def test_repetition_penalty_is_ctrl_s_formula():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    out = penalize_repetition(logits, torch.tensor([0, 1, 1]), 2.0)
    assert out.tolist() == [1.0, -2.0, 0.5, 3.0]


def test_requests_the_engine_can_never_hold_are_refused_up_front():
    engine = Engine(tiny_model(), kv_blocks=4, block_size=4)
    with pytest.raises(ValueError, match="need 21 tokens of KV cache; the engine holds 16"):
        engine.add(list(range(1, 12)), SamplingParams(max_new_tokens=10))
    with pytest.raises(ValueError, match="at least one token"):
        engine.add([], SamplingParams())


def test_block_manager_reuses_and_evicts_in_lru_order():
    bm = BlockManager(4, block_size=2)
    hashes = block_hashes([1, 2, 3, 4, 5], 2)
    assert len(hashes) == 2 and hashes != block_hashes([9, 2, 3, 4], 2)  # a hash covers the whole prefix
    a = [bm.allocate(), bm.allocate()]
    for block, h in zip(a, hashes):
        bm.register(block, h)
    bm.release(a)
    assert bm.available == 4 and bm.used == 0
    assert bm.match_prefix(hashes) == a  # cached blocks come back
    bm.release(a)
    b = [bm.allocate() for _ in range(3)]  # two free ones, then the least recently used cached one
    assert a[0] in b and a[1] not in b and bm.match_prefix(hashes) == []
    bm.allocate()
    with pytest.raises(OutOfBlocks):
        bm.allocate()
