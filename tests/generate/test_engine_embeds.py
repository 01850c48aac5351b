"""The engine with prompts given as input embeddings and float RoPE positions (a vision-language
model's image features, V2PE): its greedy tokens are those of a cacheless greedy loop over
`forward_hidden(inputs_embeds=..., position_ids=...)`, whatever text-only requests share the batch."""

import pytest
import torch

from lmforge.generate import Engine, SamplingParams, generate
from tests.helpers import tiny_model

NEW = 10


def _reference(model, embeds: torch.Tensor, positions: torch.Tensor, n: int) -> list[int]:
    """Greedy tokens by recomputing the whole sequence at every step: the prompt's embeddings and
    positions, then each generated token's embedding at the last position + 1, + 2, ..."""
    out = []
    with torch.no_grad():
        for _ in range(n):
            new = torch.tensor(out, dtype=torch.long)
            h = torch.cat([embeds, model.tok_embeddings(new)])
            p = torch.cat([positions, positions[-1] + 1 + torch.arange(len(out), dtype=torch.float32)])
            hidden = model.forward_hidden(inputs_embeds=h[None], position_ids=p[None])
            out.append(int(model.logits(hidden[0, -1]).argmax()))
    return out


def _v2pe(n_text: int, n_image: int, delta: float) -> torch.Tensor:
    """Positions of `n_text` text tokens, then `n_image` image tokens advancing by delta, then
    `n_text` more text tokens."""
    steps = [1.0] * n_text + [delta] * n_image + [1.0] * n_text
    return torch.tensor([0.0] + steps[:-1]).cumsum(0)


def _run(engine, requests):
    """Add every request at step 0 (or at its step), run to the end; greedy tokens per request."""
    out, handles, step = {}, [], 0
    pending = sorted(requests, key=lambda r: r[0])
    while pending or engine.has_work():
        while pending and pending[0][0] <= step:
            _, args, kwargs = pending.pop(0)
            handles.append(engine.add(*args, **kwargs))
        for ev in engine.step():
            if ev.token_id is not None:
                out.setdefault(ev.request_id, []).append(ev.token_id)
        step += 1
    return [out.get(h.id, []) for h in handles]


# Room for all, or so little that requests are preempted and recomputed; inside the trained window,
# or beyond it (dynamic NTK from the last position + 1).
@pytest.mark.parametrize("kv_blocks, window", [(64, 64), (12, 64), (64, 16)])
def test_embedding_prompts_with_float_positions_equal_a_cacheless_loop(kv_blocks, window):
    # Weights large enough that attention is far from uniform: the positions change the tokens.
    model = tiny_model(seed=7, max_seq_len=window, init_std=0.1)
    dim, vocab = model.cfg.dim, model.cfg.vocab_size
    g = torch.Generator().manual_seed(0)
    params = SamplingParams(max_new_tokens=NEW)
    integer = torch.arange(14, dtype=torch.float32)
    fractional = _v2pe(4, 8, 0.25)  # 16 tokens: 0, 1, 2, 3, 4, 4.25, ..., 5.75, 6, 7, 8, 9
    quarter = _v2pe(3, 20, 1 / 16)
    embed_prompts = [(torch.randn(len(p), dim, generator=g), p) for p in (integer, fractional, quarter)]
    texts = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (5, 11, 3)]
    ref_text = [c.token_ids for c in generate(model, texts, params)]
    ref_embed = [_reference(model, e, p, NEW) for e, p in embed_prompts]
    e, p = embed_prompts[1]
    assert ref_embed[1] != _reference(model, e, torch.arange(len(p), dtype=torch.float32), NEW)

    engine = Engine(model, kv_blocks=kv_blocks, block_size=4, max_batch=4)
    preempted, preempt = [], engine._preempt
    engine._preempt = lambda req: (preempted.append(req.embeds is not None and bool(req.output)), preempt(req))
    # The placeholder ids say nothing (every image token is the same id): the embeddings decide.
    requests = [(0, (texts[0], params), {})]
    requests += [(0, ([5] * len(p), params), {"prompt_embeds": e, "prompt_positions": p}) for e, p in embed_prompts[:2]]
    requests += [(2, (texts[1], params), {}),
                 (3, ([5] * len(embed_prompts[2][1]), params),
                  {"prompt_embeds": embed_prompts[2][0], "prompt_positions": embed_prompts[2][1]}),
                 (4, (texts[2], params), {})]
    got = _run(engine, requests)
    assert got[1:3] + got[4:5] == ref_embed
    assert got[0:1] + got[3:4] + got[5:6] == ref_text
    assert engine.kv_blocks_used == 0 and not engine.running and not engine.waiting
    if kv_blocks == 12:  # an embedding request recomputed from its embeddings and generated tokens
        assert any(preempted)


def test_embeddings_without_positions_and_no_prefix_cache_for_them():
    model = tiny_model(seed=8, init_std=0.1)
    g = torch.Generator().manual_seed(1)
    params = SamplingParams(max_new_tokens=6)
    a, b = (torch.randn(9, model.cfg.dim, generator=g) for _ in range(2))
    engine = Engine(model, kv_blocks=32, block_size=4)
    got = _run(engine, [(0, ([7] * 9, params), {"prompt_embeds": a}), (2, ([7] * 9, params), {"prompt_embeds": b})])
    positions = torch.arange(9, dtype=torch.float32)
    assert got == [_reference(model, a, positions, 6), _reference(model, b, positions, 6)]
    assert engine.stats.prefix_hit_tokens == 0  # same ids, other images: nothing shared


def test_token_embeddings_given_as_embeddings_are_the_text_request():
    model = tiny_model(seed=9)
    prompt = list(range(3, 15))
    params = SamplingParams(max_new_tokens=8)
    with torch.no_grad():
        embeds = model.tok_embeddings(torch.tensor(prompt))
    engine = Engine(model, kv_blocks=32, block_size=4)
    got = _run(engine, [(0, (prompt, params), {"prompt_embeds": embeds,
                                               "prompt_positions": torch.arange(12, dtype=torch.float32)})])
    assert got == [generate(model, [prompt], params)[0].token_ids]


def test_wrong_shapes_are_refused():
    model = tiny_model(seed=9)
    engine = Engine(model, kv_blocks=8, block_size=4)
    with pytest.raises(ValueError, match="prompt_embeds"):
        engine.add([1, 2, 3], SamplingParams(), prompt_embeds=torch.zeros(2, model.cfg.dim))
    with pytest.raises(ValueError, match="prompt_positions"):
        engine.add([1, 2, 3], SamplingParams(), prompt_positions=torch.zeros(4))
