"""The OpenAI-compatible HTTP API over the engine (FastAPI), the chat page, health and metrics.

    GET  /                      the chat page (one static file, nothing fetched from elsewhere)
    GET  /health                200 while the engine thread runs, else 503
    GET  /metrics               Prometheus text: requests, tokens, tokens/s, queue, KV blocks, latency
    GET  /v1/models             the one model served; `input_modalities` says whether it takes images
    POST /v1/chat/completions   the model's chat template; stream=true as server-sent events; with a
                                vision-language model, `image_url` content parts (lmforge.serve.vision);
                                `response_format` json_object / json_schema: structured outputs
    POST /v1/completions        plain text prompts

Errors have the OpenAI shape, `{"error": {"message", "type", "param", "code"}}`: malformed JSON, a
value out of range, an unknown model or a prompt beyond the context are 4xx before any work; a
missing or wrong API key is 401. A streaming client that disconnects cancels its request. A bad
image (corrupt, unsupported, too large, too many, from a place the server does not read, or sent to
a text-only model) is a 400 naming the message part (`messages.1.content.0`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse

from lmforge.generate import Event, SamplingParams
from lmforge.generate.json_schema import SchemaError, compile_schema
from lmforge.inference import with_stop_ids
from lmforge.serve.metrics import prometheus_text
from lmforge.serve.runner import EngineRunner
from lmforge.serve.schemas import ChatRequest, CompletionRequest
from lmforge.serve.vision import ImageInputError, VisionPrompter, image_parts, message_parts


log = logging.getLogger(__name__)


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": type, "param": param, "code": code}}


def _error_response(e: APIError) -> JSONResponse:
    return JSONResponse(e.body, status_code=e.status)


def create_app(runner: EngineRunner, tokenizer, model_name: str, max_model_len: int,
               api_key: str | None = None, vision: VisionPrompter | None = None) -> FastAPI:
    """The app; `runner` must be started (and stopped by the caller). `vision`: the model takes
    images (an InternVL checkpoint), prepared by this prompter."""
    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None)
    created = int(time.time())
    started = time.time()
    modalities = ["text", "image"] if vision is not None else ["text"]

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return _error_response(e)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        log.exception("request %s %s failed", request.method, request.url.path)
        return _error_response(APIError(500, f"internal error: {type(e).__name__}: {e}", type="server_error"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message, where = "the request body is not valid JSON", None
        return _error_response(APIError(400, f"{where}: {message}" if where else message, param=where or None))

    async def authorized(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        if header != f"Bearer {api_key}":
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                           type="authentication_error", code="invalid_api_key")

    def check_model(name: str) -> None:
        if name != model_name:
            raise APIError(404, f"the model {name!r} does not exist; this server serves {model_name!r}",
                           param="model", code="model_not_found")

    def check_length(prompt: list[int], max_tokens: int) -> None:
        if len(prompt) + max_tokens > max_model_len:
            raise APIError(400, f"this model's context is {max_model_len} tokens; the prompt has {len(prompt)} and "
                                f"max_tokens is {max_tokens}: shorten the prompt or lower max_tokens",
                           param="messages", code="context_length_exceeded")

    def sampling(req, max_tokens: int, logprobs: int | None, json_schema=None) -> SamplingParams:
        params = SamplingParams(max_new_tokens=max_tokens, temperature=req.temperature, top_k=req.top_k,
                                top_p=req.top_p, stop_strings=tuple(req.stop), seed=req.seed,
                                repetition_penalty=req.repetition_penalty, logprobs=logprobs, json_schema=json_schema)
        return with_stop_ids(params, tokenizer)

    def response_schema(req: ChatRequest):
        """The JSON Schema of `response_format`, checked before any work (a 400 names what lmforge
        cannot enforce), or None for free text."""
        schema = req.response_format.target_schema() if req.response_format is not None else None
        if schema is not None:
            try:
                compile_schema(schema)
            except SchemaError as e:
                where = "response_format.json_schema.schema" + (f".{e.path}" if e.path else "")
                raise APIError(400, f"{where}: {e.message}", param=where,
                               code="unsupported_schema") from None
        return schema

    async def events(prompt: list[int], params: SamplingParams, **inputs) -> AsyncIterator[Event]:
        """The request's events as the engine produces them; leaving early cancels it. `inputs`:
        the prompt's embeddings and positions, for a prompt with images."""
        if not runner.alive:
            raise APIError(503, "the engine has stopped; see the server's log", type="server_error")
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Event] = asyncio.Queue()
        try:
            request_id = runner.submit(prompt, params, lambda ev: loop.call_soon_threadsafe(inbox.put_nowait, ev),
                                       **inputs)
        except ValueError as e:
            raise APIError(400, str(e), code="context_length_exceeded") from None
        finished = False
        try:
            while not finished:
                ev = await inbox.get()
                finished = ev.finish_reason is not None
                if ev.finish_reason == "error":
                    raise APIError(500, "the engine failed while generating; see the server's log", type="server_error")
                yield ev
        finally:
            if not finished:
                runner.abort(request_id)

    def token_text(token_id: int) -> str:
        return tokenizer.decode([token_id])

    def chat_logprob(ev: Event) -> dict:
        tok = token_text(ev.token_id)
        return {"token": tok, "logprob": ev.choice.logprob, "bytes": list(tok.encode()),
                "top_logprobs": [{"token": token_text(t), "logprob": lp, "bytes": list(token_text(t).encode())}
                                 for t, lp in ev.choice.top or []]}

    @app.get("/", response_class=HTMLResponse)
    async def chat_page():
        return resources.files("lmforge.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health():
        if not runner.alive:
            return JSONResponse({"status": "error", "error": repr(runner.error)}, status_code=503)
        return {"status": "ok", "model": model_name}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return prometheus_text(runner, started)

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "lmforge", "max_model_len": max_model_len,
                                            "input_modalities": modalities}]}

    async def chat_prompt(messages) -> tuple[list[int], dict]:
        """The prompt's ids, and for a prompt with images its embeddings and positions."""
        if vision is None:
            if image_parts(messages):
                where = image_parts(messages)[0]
                raise APIError(400, f"{where}: the model {model_name!r} takes text only; send the message without "
                                    "image_url parts, or serve a vision-language (InternVL) checkpoint",
                               param=where, code="images_not_supported")
            try:
                rendered = [{"role": m.role, "content": "".join(text for kind, text in message_parts(m.content, i))}
                            for i, m in enumerate(messages)]
            except ImageInputError as e:
                raise APIError(400, str(e), param=e.param) from None
            return tokenizer.encode_chat(rendered, add_generation_prompt=True), {}
        try:
            # Reading and decoding images takes a while: off the event loop.
            rendered, images = await asyncio.to_thread(vision.render, messages)
        except ImageInputError as e:
            raise APIError(400, str(e), param=e.param, code="invalid_image") from None
        prompt = tokenizer.encode_chat(rendered, add_generation_prompt=True)
        if not images:
            return prompt, {}
        if len(prompt) >= max_model_len:  # before the vision forward: no room left for a reply
            n_image = prompt.count(vision.model.cfg.image_token_id)
            raise APIError(400, f"the prompt has {len(prompt)} tokens, {n_image} of them for {len(images)} image(s), "
                                f"and this model's context is {max_model_len}: send fewer or smaller images, or "
                                "start the server with a lower --max-tiles",
                           param="messages", code="context_length_exceeded")
        embeds, positions = await asyncio.to_thread(vision.encode, prompt, images)
        return prompt, {"prompt_embeds": embeds, "prompt_positions": positions}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat(req: ChatRequest):
        check_model(req.model)
        schema = response_schema(req)
        try:
            prompt, inputs = await chat_prompt(req.messages)
        except ValueError as e:
            raise APIError(400, str(e), param="messages") from None
        max_tokens = req.max_completion_tokens or req.max_tokens or max(max_model_len - len(prompt), 1)
        check_length(prompt, max_tokens)
        params = sampling(req, max_tokens, (req.top_logprobs or 0) if req.logprobs else None, schema)
        cid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": cid, "created": now, "model": model_name}
        # `n` choices are n requests of the same prompt, queued together: the engine computes the
        # prompt once for all of them. Choice i samples with seed + i (when a seed is given).
        gens = [events(prompt, params if params.seed is None else dataclasses.replace(params, seed=params.seed + i),
                       **inputs) for i in range(req.n)]
        # All submitted before any first token (so the engine admits them in one step); errors before
        # the first token are still a plain 4xx/5xx.
        firsts = await asyncio.gather(*(anext(gen) for gen in gens))
        choices = list(zip(firsts, gens))

        def usage(n: int) -> dict:
            return {"prompt_tokens": len(prompt), "completion_tokens": n, "total_tokens": len(prompt) + n}

        if req.stream:
            async def sse():
                n = 0
                chunk = {**head, "object": "chat.completion.chunk"}
                for i in range(req.n):
                    yield _sse({**chunk, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                                      "logprobs": None, "finish_reason": None}]})
                async for i, ev in _merged(choices):
                    n += ev.token_id is not None
                    delta = {"content": ev.text} if ev.text else {}
                    lp = {"content": [chat_logprob(ev)]} if params.logprobs is not None and ev.token_id is not None \
                        else None
                    if delta or lp or ev.finish_reason:
                        yield _sse({**chunk, "choices": [{"index": i, "delta": delta, "logprobs": lp,
                                                          "finish_reason": ev.finish_reason}]})
                if req.stream_usage():
                    yield _sse({**chunk, "choices": [], "usage": usage(n)})
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")

        async def collect(first: Event, gen) -> tuple[str, int, str | None, list]:
            text, n, reason, lps = "", 0, None, []
            async for ev in _chain(first, gen):
                text += ev.text
                n += ev.token_id is not None
                reason = ev.finish_reason or reason
                if params.logprobs is not None and ev.token_id is not None:
                    lps.append(chat_logprob(ev))
            return text, n, reason, lps

        results = await asyncio.gather(*(collect(first, gen) for first, gen in choices))
        return {**head, "object": "chat.completion",
                "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                             "logprobs": {"content": lps} if params.logprobs is not None else None,
                             "finish_reason": reason} for i, (text, _, reason, lps) in enumerate(results)],
                "usage": usage(sum(r[1] for r in results))}

    @app.post("/v1/completions", dependencies=[Depends(authorized)])
    async def completions(req: CompletionRequest):
        check_model(req.model)
        prompt = tokenizer.encode(req.prompt, add_bos=True)
        check_length(prompt, req.max_tokens)
        params = sampling(req, req.max_tokens, req.logprobs)
        cid, now = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        head = {"id": cid, "object": "text_completion", "created": now, "model": model_name}
        gen = events(prompt, params)
        first = await anext(gen)

        def logprobs_of(ev: Event) -> dict:
            return {"tokens": [token_text(ev.token_id)], "token_logprobs": [ev.choice.logprob],
                    "top_logprobs": [{token_text(t): lp for t, lp in ev.choice.top or []}]}

        if req.stream:
            async def sse():
                if req.echo:
                    yield _sse({**head, "choices": [{"index": 0, "text": req.prompt, "logprobs": None,
                                                     "finish_reason": None}]})
                async for ev in _chain(first, gen):
                    lp = logprobs_of(ev) if params.logprobs is not None and ev.token_id is not None else None
                    if ev.text or lp or ev.finish_reason:
                        yield _sse({**head, "choices": [{"index": 0, "text": ev.text, "logprobs": lp,
                                                         "finish_reason": ev.finish_reason}]})
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")
        text, n, reason = (req.prompt if req.echo else ""), 0, None
        merged = {"tokens": [], "token_logprobs": [], "top_logprobs": []}
        async for ev in _chain(first, gen):
            text += ev.text
            n += ev.token_id is not None
            reason = ev.finish_reason or reason
            if params.logprobs is not None and ev.token_id is not None:
                for key, value in logprobs_of(ev).items():
                    merged[key] += value
        return {**head, "choices": [{"index": 0, "text": text, "finish_reason": reason,
                                     "logprobs": merged if params.logprobs is not None else None}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": n, "total_tokens": len(prompt) + n}}

    return app


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _merged(choices: list[tuple[Event, AsyncIterator[Event]]]) -> AsyncIterator[tuple[int, Event]]:
    """(choice index, event) of several requests' events, as they come. Leaving early cancels them
    all (each request's generator then aborts it in the engine)."""
    if len(choices) == 1:  # the common case, without tasks
        async for ev in _chain(*choices[0]):
            yield 0, ev
        return
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(i: int, first: Event, gen: AsyncIterator[Event]) -> None:
        try:
            async for ev in _chain(first, gen):
                await queue.put((i, ev))
        finally:
            await queue.put((i, done))

    tasks = [asyncio.create_task(pump(i, first, gen)) for i, (first, gen) in enumerate(choices)]
    try:
        left = len(tasks)
        while left:
            i, ev = await queue.get()
            if ev is done:
                left -= 1
            else:
                yield i, ev
    finally:
        for task in tasks:
            task.cancel()


async def _chain(first: Event, rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    yield first
    if first.finish_reason is None:
        async for ev in rest:
            yield ev
