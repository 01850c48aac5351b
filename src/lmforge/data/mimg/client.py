"""A small client for any OpenAI-compatible endpoint, made for batch data generation.

Paper: LongMIT / MIMG, arXiv 2409.01893 (its agents talk to an OpenAI-compatible chat server);
docs/papers.md §8.

What a generation job needs and an interactive client does not:

* **A cache on disk.** Every call is keyed by the sha256 of (model, messages, sampling parameters)
  and its answer stored under `cache_dir/<2 hex>/<key>.json` (atomically), so a killed run resumes
  where it stopped and a rerun sends no request at all. The base URL and the API key are not part of
  the key: the same model behind another address gives the same answers.
* **A concurrency limit.** `chat_many` runs at most `concurrency` requests at a time on a thread
  pool and returns the answers in input order.
* **Retries with exponential backoff** (`backoff * 2**attempt` seconds) on what may pass: a
  connection error, a timeout, 408, 409, 429 and 5xx. Any other 4xx is final.
* **Structured outputs** where an agent asks for them: its `response_format` goes with the request
  (and into the cache key) unless `structured` is off, for an endpoint that does not take it.
* **Failures are answers, not exceptions.** A call that fails for good returns `None` with its
  reason (`http 500`, `http 400 context_length_exceeded`, `connection`, `no content`), also counted
  in `stats`; the agents count and skip it.

Only the standard library is used (urllib), so the base install can run it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.atomic import write_json

RETRY_STATUS = frozenset({408, 409, 429})


class EndpointError(ConnectionError):
    """The endpoint cannot be used at all (no model listed, unreachable for the model lookup)."""


@dataclass
class ClientStats:
    """Requests sent, answers served from the cache, retries, and final failures by reason."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def fail(self, reason: str) -> None:
        with self.lock:
            self.failures[reason] += 1


def _error_code(e: urllib.error.HTTPError) -> str:
    """' context_length_exceeded' from an OpenAI-shaped error body, else ''."""
    try:
        code = json.loads(e.read().decode("utf-8"))["error"]["code"]
    except (ValueError, KeyError, TypeError, OSError):
        return ""
    return f" {code}" if isinstance(code, str) and code else ""


def cache_key(payload: dict) -> str:
    """sha256 of the request body with sorted keys: the same call gives the same key."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class Client:
    """Chat completions and embeddings from `base_url` (e.g. http://127.0.0.1:8000/v1)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api_key: str | None = None
    cache_dir: str | Path | None = None
    concurrency: int = 4
    max_retries: int = 4
    backoff: float = 1.0
    timeout: float = 300.0
    temperature: float = 0.0
    max_tokens: int = 512
    structured: bool = True  # send the agents' response_format (OpenAI structured outputs)
    stats: ClientStats = field(default_factory=ClientStats)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)

    # -- HTTP ---------------------------------------------------------------------------------
    def _post(self, path: str, body: dict) -> tuple[dict | None, str]:
        """POST with retries: (decoded JSON, ""), or (None, reason) with the reason counted."""
        data = json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.add("retries")
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self.stats.add("requests")
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8")), ""
            except urllib.error.HTTPError as e:
                reason = f"http {e.code}" + _error_code(e)
                if e.code not in RETRY_STATUS and e.code < 500:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = f"connection: {getattr(e, 'reason', e)}"
            except (json.JSONDecodeError, UnicodeDecodeError):
                reason = "response not JSON"
        reason = reason.split(":")[0]
        self.stats.fail(reason)
        return None, reason

    def resolve_model(self) -> str:
        """`model`, or the first model the endpoint lists (what `lmforge serve` serves)."""
        if self.model:
            return self.model
        request = urllib.request.Request(self.base_url + "/models", headers=(
            {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                models = json.loads(response.read().decode("utf-8")).get("data") or []
        except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as e:
            raise EndpointError(f"{self.base_url}/models: {getattr(e, 'reason', e)}; start `lmforge serve MODEL` "
                                "or give --base-url (and --model) of a running OpenAI-compatible server") from None
        if not models:
            raise EndpointError(f"{self.base_url}/models lists no model; give --model")
        self.model = models[0]["id"]
        return self.model

    # -- cache --------------------------------------------------------------------------------
    def _cached(self, kind: str, payload: dict, call) -> tuple[object, str]:
        """(value, "") from the cache, or `call()`'s (value, failure reason); a value is stored, a failure not."""
        key = cache_key({"kind": kind, **payload})
        path = self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir is not None else None
        if path is not None and path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8"))["value"]
                self.stats.add("cache_hits")
                return value, ""
            except (json.JSONDecodeError, KeyError, OSError):
                pass  # a damaged entry is asked again
        value, reason = call()
        if path is not None and value is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {"request": payload, "value": value})
        return value, reason

    # -- API ----------------------------------------------------------------------------------
    def chat(self, messages: list[dict[str, str]], response_format: dict | None = None) -> str | None:
        """The assistant's text for `messages` ('' when the model said nothing), None on failure."""
        return self.chat_reason(messages, response_format)[0]

    def chat_reason(self, messages: list[dict[str, str]],
                    response_format: dict | None = None) -> tuple[str | None, str]:
        """(text, "") or (None, why the request failed: 'http 500', 'connection', ...)."""
        payload = {"model": self.resolve_model(), "messages": messages, "temperature": self.temperature}
        if self.max_tokens:  # 0: the server's default (lmforge serve: the rest of the context)
            payload["max_tokens"] = self.max_tokens
        if response_format is not None and self.structured:
            payload["response_format"] = response_format

        def call() -> tuple[str | None, str]:
            response, reason = self._post("/chat/completions", payload)
            if response is None:
                return None, reason
            try:
                return response["choices"][0]["message"]["content"] or "", ""
            except (KeyError, IndexError, TypeError):
                self.stats.fail("no content")
                return None, "no content"

        return self._cached("chat", payload, call)

    def chat_many(self, conversations: list[list[dict[str, str]]],
                  response_format: dict | None = None) -> list[tuple[str | None, str]]:
        """`chat_reason` of each conversation, at most `concurrency` at a time, in input order."""
        if not conversations:
            return []
        self.resolve_model()  # once, before the threads
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda c: self.chat_reason(c, response_format), conversations))

    def embed(self, texts: list[str], model: str, batch: int = 64) -> list[list[float] | None]:
        """Vectors from the endpoint's /embeddings for each text (None where a batch failed)."""
        batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]

        def one(inputs: list[str]) -> list | None:
            payload = {"model": model, "input": inputs}

            def call() -> tuple[list | None, str]:
                response, reason = self._post("/embeddings", payload)
                if response is None:
                    return None, reason
                try:
                    rows = sorted(response["data"], key=lambda r: r["index"])
                    if len(rows) == len(inputs):
                        return [r["embedding"] for r in rows], ""
                except (KeyError, TypeError):
                    pass
                self.stats.fail("no embeddings")
                return None, "no embeddings"

            return self._cached("embed", payload, call)[0]

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            results = list(pool.map(one, batches))
        return [v for inputs, r in zip(batches, results) for v in (r or [None] * len(inputs))]
