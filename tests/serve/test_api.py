"""`lmforge serve` through the official `openai` client and raw HTTP: completions, chat (streamed as
server-sent events), models, metrics, the API key, and bad requests answered 4xx with an
OpenAI-style error body, never a 500."""

import json

import httpx
import pytest
import torch

from lmforge.generate import SamplingParams, generate

openai = pytest.importorskip("openai")
API_KEY = "sk-test"


def _client(url, key=API_KEY):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_chat_completion_is_the_engine_s_greedy_reply(served, chat_tokenizer):
    url, _, model = served
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a rose?"}]
    r = _client(url).chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0)
    prompt = chat_tokenizer.encode_chat(messages, add_generation_prompt=True)
    ref = generate(model, [prompt], SamplingParams(max_new_tokens=10, stop_token_ids=tuple(chat_tokenizer.stop_ids)),
                   chat_tokenizer)[0]
    assert r.choices[0].message.content == ref.text and r.choices[0].message.role == "assistant"
    assert r.usage.prompt_tokens == len(prompt) and r.usage.completion_tokens == len(ref.token_ids)
    assert r.choices[0].finish_reason == ref.finish_reason and r.model == "tiny"


def test_streamed_chat_equals_the_whole_reply(served):
    url, _, _ = served
    client = _client(url)
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=16, temperature=0)
    whole = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 16 and not chunks[-1].choices
    # On the wire: server-sent events ending in [DONE].
    raw = httpx.post(f"{url}/v1/chat/completions", json={**kw, "stream": True},
                     headers={"Authorization": f"Bearer {API_KEY}"}).text
    assert raw.startswith("data: {") and raw.rstrip().endswith("data: [DONE]")


def test_completions_with_logprobs_and_models(served, chat_tokenizer):
    url, _, model = served
    client = _client(url)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    r = client.completions.create(model="tiny", prompt="To be, or not", max_tokens=5, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.token_logprobs) == 5 and all(len(t) == 2 for t in lp.top_logprobs)
    ids = chat_tokenizer.encode("To be, or not", add_bos=True)
    with torch.no_grad():
        first = torch.log_softmax(model(torch.tensor([ids]))[0, -1].double(), -1)
    assert abs(lp.token_logprobs[0] - float(first.max())) < 1e-4  # greedy: the top token's log-probability
    seeded = [client.completions.create(model="tiny", prompt="Once", max_tokens=8, temperature=1.0, seed=3)
              .choices[0].text for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_api_key_is_required(served):
    url, _, _ = served
    with pytest.raises(openai.AuthenticationError):
        _client(url, key="wrong").models.list()
    r = httpx.get(f"{url}/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{url}/health").json()["status"] == "ok"  # health and the page stay open
    assert "lmforge chat" in httpx.get(f"{url}/").text


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    ({"model": "tiny", "messages": []}, 400, "messages"),
    ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}, 400, "max_tokens"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000}, 400, "messages"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "hi " * 400}]}, 400, "messages"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stop": list("abcde")}, 400, "stop"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400, "temperature"),
    ({"model": "tiny", "messages": [{"role": "pirate", "content": "hi"}]}, 400, "messages.0.role"),
    ({"model": "tiny", "prompt": ["a", "b"]}, 400, "prompt"),
])
def test_bad_requests_are_4xx_with_an_openai_error_body(served, body, status, param):
    url, runner, _ = served
    endpoint = "completions" if isinstance(body, dict) and "prompt" in body else "chat/completions"
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(f"{url}/v1/{endpoint}", content=data, headers=headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"] and error["param"] == param
    assert runner.alive


@pytest.mark.parametrize("n", [1, 3])
def test_a_client_that_disconnects_mid_stream_frees_its_blocks(served, n):
    url, runner, _ = served
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Go on and on."}], "max_tokens": 200,
            "temperature": 0, "stream": True, "n": n}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i == 3:
                assert runner.engine.kv_blocks_used > 0
                break
    import time

    deadline = time.monotonic() + 10
    while runner.engine.kv_blocks_used and time.monotonic() < deadline:
        time.sleep(0.02)
    assert runner.engine.kv_blocks_used == 0 and not runner.engine.running


def test_metrics_are_prometheus_text(served):
    url, _, _ = served
    text = httpx.get(f"{url}/metrics").text
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if not line.startswith("#")}
    assert samples["lmforge_requests_total"] >= 1 and "lmforge_kv_blocks_used" in samples
    assert samples["lmforge_kv_blocks_total"] == 2048 // 16
    assert 'lmforge_time_to_first_token_seconds{quantile="0.5"}' in samples
    for name in ("lmforge_queue_length", "lmforge_tokens_per_second", "lmforge_generated_tokens_total"):
        assert f"# TYPE {name} " in text
    json.dumps(samples)


def test_n_choices_are_the_seeded_replies_of_one_request_each(served):
    """n = 3 with a seed: choice i is what a request with seed + i answers alone (the engine computes
    the prompt once for the three), whole or streamed; usage counts every choice's tokens."""
    url, runner, _ = served
    client = _client(url)
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Name a flower."}], max_tokens=12, temperature=1.0)
    replies = [client.chat.completions.create(**kw, seed=7 + i) for i in range(3)]
    alone = [a.choices[0].message.content for a in replies]
    hits = runner.engine.stats.prefix_hit_tokens
    r = client.chat.completions.create(**kw, seed=7, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.message.content for c in r.choices] == alone
    assert r.usage.completion_tokens == sum(a.usage.completion_tokens for a in replies)
    assert r.usage.prompt_tokens == replies[0].usage.prompt_tokens
    # The first choice takes the prompt's full blocks from the prefix cache (the requests above computed
    # them); the other two are not computed at all.
    bs, n_prompt = runner.engine.pool.block_size, r.usage.prompt_tokens
    assert runner.engine.stats.prefix_hit_tokens - hits == (n_prompt - 1) // bs * bs + 2 * n_prompt
    stream = list(client.chat.completions.create(**kw, seed=7, n=3, stream=True,
                                                 stream_options={"include_usage": True}))
    text = {i: "" for i in range(3)}
    for chunk in stream:
        for c in chunk.choices:
            text[c.index] += c.delta.content or ""
    assert [text[i] for i in range(3)] == alone
    assert stream[-1].usage.completion_tokens == r.usage.completion_tokens
    r = httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "a", "n": 2},
                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
