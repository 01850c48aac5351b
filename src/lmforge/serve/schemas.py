"""The OpenAI API's request bodies as lmforge serves them, checked before any work starts.

Fields the API defines and lmforge does not act on (`user`, `presence_penalty`, ...) are accepted
and ignored, as vLLM and LMDeploy do; vLLM's extensions `top_k` and `repetition_penalty` are
honoured, and so is `response_format` (structured outputs: `json_object` or `json_schema`, enforced
token by token, lmforge.generate.token_mask). A value out of range is a 400 naming the field
(lmforge.serve.app formats it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP_STRINGS = 4  # the OpenAI API's own limit
MAX_CHOICES = 16  # `n` of a chat completion


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)  # a string or a list of strings in the request
    stream: bool = False

    @field_validator("stop", mode="before")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if not all(isinstance(s, str) for s in stops):
            raise ValueError("stop must be a string or a list of strings")
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return stops

    def stream_usage(self) -> bool:
        options = (self.model_extra or {}).get("stream_options") or {}
        return bool(isinstance(options, dict) and options.get("include_usage"))


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "environment", "tool"]
    # A string, or OpenAI content parts: {"type": "text", "text": ...} and, for a vision-language
    # model, {"type": "image_url", "image_url": {"url": ...}} (lmforge.serve.vision reads them).
    content: str | list[dict]



class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = "response"
    schema_: dict | bool | None = Field(None, alias="schema")  # None: any JSON value
    strict: bool | None = None  # lmforge always enforces what it accepts (it refuses what it cannot)


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: free text, a JSON object, or JSON that matches a schema."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _has_schema(self):
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema object: {\"name\": ..., \"schema\": {...}}")
        return self

    def target_schema(self) -> dict | bool | None:
        """The JSON Schema the reply must match, or None for free text."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "object"}
        return self.json_schema.schema_ if self.json_schema.schema_ is not None else True


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    n: int = Field(1, ge=1, le=MAX_CHOICES)  # choices, sampled together (the prompt computed once)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    n: int = Field(1, ge=1, le=1, description="one choice per request here; /v1/chat/completions serves n > 1")
    max_tokens: int = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError(f"one prompt per request, got {len(v)}")
            return v[0]
        return v
