"""Structured outputs in the engine: every reply of an untrained model, sampled or greedy, is JSON that
its schema allows; greedy decoding picks the best token that a token-by-token check allows, step by
step, whatever else shares the batch."""

import json

import pytest
import torch

from lmforge.generate import Engine, SamplingParams
from lmforge.generate.json_grammar import JsonGrammar
from lmforge.generate.json_schema import compile_schema
from tests.helpers import tiny_model

jsonschema = pytest.importorskip("jsonschema")

SCHEMAS = [
    {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 1, "maxItems": 3},
    {"type": "object", "required": ["question", "answer"], "properties": {
        "question": {"type": "string", "maxLength": 12}, "answer": {"type": "string", "maxLength": 12},
        "score": {"type": "integer"}}},
    {"enum": ["YES", "NO"]},
    {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": ["number", "null"]}}},
]


@pytest.fixture(scope="module")
def tok():
    from lmforge.corpora import english_text
    from lmforge.tokenizer import train_bpe

    return train_bpe([english_text(60_000) + ' {"a": [1, 2.5], "b": "c\\n"} é€' * 20], vocab_size=600)


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model(seed=5, vocab_size=tok.vocab_size, max_seq_len=512, eos_token_id=tok.eos_id)


def _replies(engine, jobs):
    text, reasons = {}, {}
    reqs = [engine.add(prompt, params) for prompt, params in jobs]
    for ev in engine.run():
        text[ev.request_id] = text.get(ev.request_id, "") + ev.text
        if ev.finish_reason:
            reasons[ev.request_id] = ev.finish_reason
    return [(text.get(r.id, ""), reasons[r.id]) for r in reqs]


def test_every_sampled_reply_is_json_its_schema_allows(tok, model):
    engine = Engine(model, tok, kv_blocks=256, block_size=8, max_batch=8)
    stops = tuple(tok.stop_ids)
    # 300 tokens: room for the longest value each schema allows even one byte a token (\uXXXX escapes
    # included), so a reply ends by its grammar, never by max_new_tokens, whatever the CPU's rounding.
    jobs = [(tok.encode("Reply in JSON:", add_bos=True),
             SamplingParams(max_new_tokens=300, temperature=1.0, seed=seed, stop_token_ids=stops, json_schema=schema))
            for schema in SCHEMAS for seed in range(6)]
    jobs.append((tok.encode("Free text:", add_bos=True), SamplingParams(max_new_tokens=20, temperature=1.0, seed=0)))
    replies = _replies(engine, jobs)
    for (text, reason), (_, params) in zip(replies[:-1], jobs):
        assert reason == "stop", text
        jsonschema.validate(json.loads(text), params.json_schema)
    with pytest.raises(ValueError):  # the unconstrained reply of the same model is not JSON
        json.loads(replies[-1][0])


def test_greedy_reply_takes_the_best_allowed_token_at_each_step(tok, model):
    """A reference without the engine: the whole sequence through the model at each step, the tokens
    whose bytes the grammar accepts found one by one, the best of them taken."""
    schema = SCHEMAS[1]
    grammar = JsonGrammar(*compile_schema(schema))
    token_bytes, stops = tok.token_bytes(), list(tok.stop_ids)
    prompt = tok.encode("Question and answer:", add_bos=True)
    ids, state = list(prompt), grammar.initial()
    with torch.no_grad():
        for _ in range(60):
            logits = model(torch.tensor([ids]))[0, -1]
            allowed = [i for i, t in enumerate(token_bytes) if t and grammar.advance(state, t)]
            if grammar.accepting(state):
                allowed += stops
            best = max(allowed, key=lambda i: float(logits[i]))
            if best in stops:
                break
            ids.append(best)
            state = grammar.advance(state, token_bytes[best])
            if grammar.finished(state):
                break
    ref = tok.decode(ids[len(prompt):])
    engine = Engine(model, tok, kv_blocks=256, block_size=8, max_batch=4)
    other = SamplingParams(max_new_tokens=30, temperature=1.0, seed=1)  # shares the batch, unconstrained
    params = SamplingParams(max_new_tokens=60, stop_token_ids=tuple(stops), json_schema=schema)
    (text, reason), _ = _replies(engine, [(prompt, params), (prompt, other)])
    assert text == ref and reason == "stop"
    jsonschema.validate(json.loads(text), schema)


def test_a_schema_the_engine_cannot_enforce_is_refused_before_it_starts(tok, model):
    engine = Engine(model, tok, kv_blocks=64, block_size=8)
    with pytest.raises(ValueError, match="pattern"):
        engine.add([1, 2], SamplingParams(json_schema={"type": "string", "pattern": "a+"}))
    assert not engine.has_work()


def test_the_batch_generate_refuses_a_schema_it_would_not_enforce(model):
    from lmforge.generate import generate

    with pytest.raises(ValueError, match="Engine"):
        generate(model, [[1, 2]], SamplingParams(json_schema={"type": "object"}))

