"""The inference engine: batched generation with a KV cache, sampling, stop conditions, streaming.

One engine serves evaluation, the chat server and RL rollouts alike (STYLE.md: share one rollout
engine). Prompts of different lengths are left-padded into one batch; the cache keeps padding out
of attention and positions, so each row generates what it would alone.

`stream()` yields an event per generated token with the text that became final with it (text that
might still turn into a stop string, or an incomplete UTF-8 character, is held back);
`generate()` collects the stream into one result per prompt.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from lmforge.generate.decode import DecodeStep
from lmforge.generate.kv_cache import KVCache
from lmforge.generate.sampling import SamplingParams, sample_next
from lmforge.model.model import InternLM2


@dataclass
class StreamEvent:
    index: int  # which prompt of the batch
    token_id: int | None  # None on the final event of a row that stopped on a stop token/string
    text: str  # newly final text
    finish_reason: str | None = None  # "stop", "length" or None while running


@dataclass
class Completion:
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"


class _RowText:
    """Detokenised text of one row, with stop strings cut and unsafe tails held back."""

    def __init__(self, tokenizer, stop_strings: Sequence[str]):
        self.tokenizer, self.stop_strings = tokenizer, tuple(s for s in stop_strings if s)
        self.ids: list[int] = []
        self.emitted = 0

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add a token; return (new final text, whether a stop string was reached)."""
        self.ids.append(token_id)
        if self.tokenizer is None:
            return "", False
        text = self.tokenizer.decode(self.ids)
        for s in self.stop_strings:
            at = text.find(s, max(0, self.emitted - len(s)))
            if at != -1:
                return self._emit(text[:at]), True
        safe = len(text)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character
            safe = len(text.rstrip("\ufffd"))
        for s in self.stop_strings:  # hold back a tail that may grow into a stop string
            for n in range(min(len(s) - 1, safe), 0, -1):
                if text[safe - n:safe] == s[:n]:
                    safe -= n
                    break
        return self._emit(text[:safe]), False

    def flush(self) -> str:
        return self._emit(self.tokenizer.decode(self.ids)) if self.tokenizer is not None else ""

    def _emit(self, text: str) -> str:
        new = text[self.emitted:] if len(text) > self.emitted else ""
        self.emitted = max(self.emitted, len(text))
        return new


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = True
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def stream(model, prompts: Sequence[Sequence[int]], params: SamplingParams, tokenizer=None,
           use_cache: bool = True, compile: bool = False) -> Iterator[StreamEvent]:
    """Generate for a batch of token-id prompts, yielding one event per row and token.

    With use_cache=False every step recomputes the whole sequence (a reference for tests).
    compile=True compiles the decode step with torch.compile (see lmforge.generate.decode): paid on
    the first shapes a process meets, then faster per token; eager if compilation fails.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (start it with the BOS token)")
    device = next(model.parameters()).device
    B = len(prompts)
    ids, mask = _left_pad(prompts, model.cfg.pad_token_id, device)
    gen = torch.Generator(device=device).manual_seed(params.seed) if params.seed is not None else None
    rows = [_RowText(tokenizer, params.stop_strings) for _ in range(B)]
    done = [False] * B
    stop_ids = set(params.stop_token_ids)
    if params.max_new_tokens == 0:
        for i in range(B):
            yield StreamEvent(i, None, "", "length")
        return

    cache = None
    if use_cache:
        cache = KVCache(model.cfg, B, ids.shape[1] + params.max_new_tokens, device,
                        next(model.parameters()).dtype)
        logits = model(ids, kv_cache=cache, padding_mask=mask, last_only=True)[:, -1]
        if isinstance(model, InternLM2):
            decode = DecodeStep(model, cache, compile=compile)
        else:  # another module with the kv_cache protocol: its own forward, one token at a time
            def decode(next_ids):
                return model(next_ids[:, None], kv_cache=cache)[:, -1]
    else:
        logits = model(ids, document_ids=mask.long())[:, -1]

    for step in range(params.max_new_tokens):
        next_ids = sample_next(logits, params, gen)
        tokens = next_ids.tolist()  # one host transfer per step, not one per row
        last_step = step == params.max_new_tokens - 1
        for i in range(B):
            if done[i]:
                continue
            tok = tokens[i]
            if tok in stop_ids:
                done[i] = True
                yield StreamEvent(i, None, rows[i].flush(), "stop")
                continue
            text, hit_stop = rows[i].push(tok)
            if hit_stop:
                done[i] = True
                yield StreamEvent(i, tok, text, "stop")
            elif last_step:
                done[i] = True
                yield StreamEvent(i, tok, text + rows[i].flush(), "length")
            else:
                yield StreamEvent(i, tok, text)
        if all(done):
            return
        if use_cache:
            logits = decode(next_ids)
        else:
            ids = torch.cat([ids, next_ids[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            logits = model(ids, document_ids=mask.long())[:, -1]


def generate(model, prompts: Sequence[Sequence[int]], params: SamplingParams, tokenizer=None,
             use_cache: bool = True, compile: bool = False) -> list[Completion]:
    """Run `stream` to the end and collect one Completion per prompt."""
    out = [Completion() for _ in prompts]
    for ev in stream(model, prompts, params, tokenizer, use_cache, compile):
        c = out[ev.index]
        if ev.token_id is not None:
            c.token_ids.append(ev.token_id)
        c.text += ev.text
        if ev.finish_reason:
            c.finish_reason = ev.finish_reason
    return out
