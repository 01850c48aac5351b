"""`response_format` through the official `openai` client: a pydantic model parsed from the reply of an
untrained model, JSON mode, streaming, and schemas the server cannot enforce refused with a 400 that
names the keyword."""

import json
from typing import Annotated

import httpx
import pytest
from pydantic import BaseModel, Field

openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")
API_KEY = "sk-test"


class Hop(BaseModel):
    question: str = Field(max_length=8)
    answer: str = Field(max_length=8)


class Questions(BaseModel):
    topic: str = Field(max_length=8)
    questions: list[Annotated[str, Field(max_length=8)]] = Field(max_length=2)
    hops: list[Hop] = Field(max_length=1)
    confident: bool
    year: int


def _client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)


def test_the_openai_client_parses_a_pydantic_model_from_the_reply(served):
    url, runner, _ = served
    messages = [{"role": "user", "content": "Write questions about roses."}]
    for seed in range(3):
        r = _client(url).chat.completions.parse(model="tiny", messages=messages, response_format=Questions,
                                                max_tokens=200, temperature=1.0, seed=seed)
        parsed = r.choices[0].message.parsed
        assert isinstance(parsed, Questions) and r.choices[0].finish_reason == "stop"
        assert json.loads(r.choices[0].message.content) == parsed.model_dump()
    assert runner.alive


def test_json_mode_gives_an_object_streamed_or_whole(served):
    url, _, _ = served
    kw = dict(model="tiny", messages=[{"role": "user", "content": "JSON please."}], max_tokens=200,
              temperature=1.0, seed=4, response_format={"type": "json_object"})
    whole = _client(url).chat.completions.create(**kw)
    streamed = "".join(c.choices[0].delta.content or "" for c in _client(url).chat.completions.create(**kw, stream=True)
                       if c.choices)
    assert streamed == whole.choices[0].message.content
    if whole.choices[0].finish_reason == "stop":  # a free object may be cut by max_tokens
        assert isinstance(json.loads(streamed), dict)
    else:
        assert streamed.startswith("{")
    schema = {"enum": ["YES", "NO"]}
    r = _client(url).chat.completions.create(**{**kw, "response_format": {
        "type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}}})
    assert json.loads(r.choices[0].message.content) in ("YES", "NO")


@pytest.mark.parametrize("response_format, param", [
    ({"type": "json_schema", "json_schema": {"name": "p", "schema": {
        "type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}}},
     "response_format.json_schema.schema.properties.age.minimum"),
    ({"type": "json_schema", "json_schema": {"name": "p", "schema": {"$ref": "#/$defs/nowhere"}}},
     "response_format.json_schema.schema.$ref"),
    ({"type": "json_schema"}, "response_format"),
    ({"type": "yaml"}, "response_format.type"),
])
def test_a_schema_the_server_cannot_enforce_is_a_400_naming_it(served, response_format, param):
    url, runner, _ = served
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "response_format": response_format}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and runner.alive
