"""The engine on a thread of its own, fed by any thread or event loop.

`lmforge.generate.Engine` is single-threaded. The server's request handlers run on an asyncio
loop; they `submit` work and get each step's events through a callback, while this thread drains
the inbox (new requests, cancellations) and steps the engine as long as it has work. A client
that goes away cancels its request, and its KV blocks are free at the next step.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from lmforge.generate import Engine, Event, SamplingParams

log = logging.getLogger(__name__)


@dataclass
class Latencies:
    """Time to first token and whole-request time of finished requests (sums and counts)."""

    ttft: deque = field(default_factory=lambda: deque(maxlen=1000))
    total: deque = field(default_factory=lambda: deque(maxlen=1000))


class EngineRunner:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._inbox: queue.Queue = queue.Queue()
        self._callbacks: dict[str, Callable[[Event], None]] = {}
        self._submitted: dict[str, float] = {}
        self._first: dict[str, float] = {}
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lmforge-engine", daemon=True)
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens) of the last steps, for tokens/s
        self.latencies = Latencies()
        self.error: BaseException | None = None

    def start(self) -> EngineRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put(None)
        self._thread.join(timeout=10)

    def submit(self, prompt: Sequence[int], params: SamplingParams, on_event: Callable[[Event], None], *,
               prompt_embeds: torch.Tensor | None = None, prompt_positions: torch.Tensor | None = None) -> str:
        """Queue a request; `on_event` is called on the engine thread with each of its events.
        Refuses at once (ValueError) what the engine could never hold. prompt_embeds and
        prompt_positions: as `Engine.add` (a vision-language prompt)."""
        need = len(prompt) + params.max_new_tokens
        if need > self.engine.capacity_tokens:
            raise ValueError(f"the prompt ({len(prompt)} tokens) and max_tokens ({params.max_new_tokens}) need "
                             f"{need} tokens of KV cache; this server holds {self.engine.capacity_tokens}")
        request_id = f"req-{next(self._ids)}"
        self._inbox.put(("add", request_id, list(prompt), params, on_event,
                         {"prompt_embeds": prompt_embeds, "prompt_positions": prompt_positions}))
        return request_id

    def abort(self, request_id: str) -> None:
        self._inbox.put(("abort", request_id))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.error is None

    def tokens_per_second(self, window: float = 10.0) -> float:
        now = time.perf_counter()
        recent = [(t, n) for t, n in list(self._recent) if now - t <= window]
        return sum(n for _, n in recent) / window

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._drain(block=not self.engine.has_work())
                if self.engine.has_work():
                    self._dispatch(self.engine.step())
        except BaseException as e:  # noqa: BLE001 - kept for /health; requests in flight are told below
            self.error = e
            for request_id, cb in list(self._callbacks.items()):
                cb(Event(request_id, None, "", "error"))

    def _drain(self, block: bool) -> None:
        try:
            item = self._inbox.get(timeout=0.1) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while item is not None:
            if item[0] == "add":
                _, request_id, prompt, params, cb, inputs = item
                self._callbacks[request_id] = cb
                self._submitted[request_id] = time.perf_counter()
                try:
                    self.engine.add(prompt, params, request_id, **inputs)
                except ValueError:  # refused by the engine: this request fails, the server goes on
                    log.exception("request %s refused by the engine", request_id)
                    self._submitted.pop(request_id, None)
                    self._callbacks.pop(request_id)(Event(request_id, None, "", "error"))
            else:
                self.engine.abort(item[1])
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                item = None

    def _dispatch(self, events: list[Event]) -> None:
        now = time.perf_counter()
        self._recent.append((now, sum(e.token_id is not None for e in events)))
        while self._recent and now - self._recent[0][0] > 60:
            self._recent.popleft()
        for ev in events:
            rid = ev.request_id
            if ev.token_id is not None and rid not in self._first:
                self._first[rid] = now
                self.latencies.ttft.append(now - self._submitted.get(rid, now))
            cb = self._callbacks.get(rid)
            if ev.finish_reason is not None:
                self._callbacks.pop(rid, None)
                self._first.pop(rid, None)
                self.latencies.total.append(now - self._submitted.pop(rid, now))
            if cb is not None:
                cb(ev)
