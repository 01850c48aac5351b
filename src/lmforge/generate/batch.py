"""Generation for a batch known up front: evaluation, benchmarks, samples.

A fixed batch runs on a contiguous KV cache (lmforge.generate.kv_cache), the fastest layout for it,
whose decode step can be compiled; requests that come and go run on the engine's paged cache
(lmforge.generate.engine). Both use the same model forward, sampling and stop handling.

Prompts of different lengths share one batch: the prefill is right-padded and the KV cache keeps
one length per row, so rows that finish leave the batch. With a seed, row i samples from its own
generator (seed + i).

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
from lmforge.generate.text import StopText


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


def _right_pad(prompts: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, longest) token ids and the mask of real tokens (None when no row is padded)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, :len(p)] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, :len(p)] = True
    return ids.to(device), (None if bool(mask.all()) else mask.to(device))


@torch.inference_mode()
def stream(model, prompts: Sequence[Sequence[int]], params: SamplingParams, tokenizer=None,
           use_cache: bool = True, compile: bool = False) -> Iterator[StreamEvent]:
    """Generate for a batch of token-id prompts, yielding one event per row and token.

    Rows that finish leave the batch, so the later steps compute only the running ones. With
    use_cache=False every step recomputes the whole sequence (a reference for tests).
    compile=True compiles the decode step with torch.compile (see lmforge.generate.decode): paid on
    the first shapes a process meets, then faster per token; eager if compilation fails.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (start it with the BOS token)")
    if params.json_schema is not None:
        raise ValueError("json_schema (structured outputs) is enforced by lmforge.generate.Engine, not by "
                         "generate/stream: queue the prompts on an Engine (as `lmforge serve` does)")
    device = next(model.parameters()).device
    B = len(prompts)
    ids, mask = _right_pad(prompts, model.cfg.pad_token_id, device)
    gens = None if params.seed is None else [torch.Generator(device=device).manual_seed(params.seed + i)
                                             for i in range(B)]
    rows = [StopText(tokenizer, params.stop_strings) for _ in range(B)]
    stop_ids = set(params.stop_token_ids)
    if params.max_new_tokens == 0:
        for i in range(B):
            yield StreamEvent(i, None, "", "length")
        return

    last = torch.tensor([len(p) - 1 for p in prompts], device=device)
    if use_cache:
        cache = KVCache(model.cfg, B, ids.shape[1] + params.max_new_tokens, device, next(model.parameters()).dtype)
        hidden = model.forward_hidden(ids, kv_cache=cache, padding_mask=mask)
        logits = model.logits(hidden[torch.arange(B, device=device), last])
        decode = DecodeStep(model, cache, compile=compile)
    else:
        seqs = [list(p) for p in prompts]
        logits = _recompute(model, seqs, device)

    running = list(range(B))  # the prompt index of each row of the batch
    for step in range(params.max_new_tokens):
        next_ids = sample_next(logits, params, None if gens is None else [gens[i] for i in running])
        tokens = next_ids.tolist()  # one host transfer per step, not one per row
        last_step = step == params.max_new_tokens - 1
        keep = []
        for row, i in enumerate(running):
            tok = tokens[row]
            if tok in stop_ids:
                yield StreamEvent(i, None, rows[i].flush(), "stop")
                continue
            text, hit_stop = rows[i].push(tok)
            if hit_stop:
                yield StreamEvent(i, tok, text, "stop")
            elif last_step:
                yield StreamEvent(i, tok, text + rows[i].flush(), "length")
            else:
                yield StreamEvent(i, tok, text)
                keep.append(row)
        if not keep:
            return
        if len(keep) < len(running):  # finished rows leave the batch
            running = [running[row] for row in keep]
            next_ids = next_ids[torch.tensor(keep, device=device)]
            if use_cache:
                cache.keep_rows(keep)
        if use_cache:
            logits = decode(next_ids)
        else:
            for i, tok in zip(running, next_ids.tolist()):
                seqs[i].append(tok)
            logits = _recompute(model, [seqs[i] for i in running], device)


def _recompute(model, seqs: list[list[int]], device) -> torch.Tensor:
    """Next-token logits (B, vocab) of each whole sequence, from scratch (one document per row)."""
    ids, mask = _right_pad(seqs, model.cfg.pad_token_id, device)
    documents = None if mask is None else (~mask).long()  # real tokens one document, padding another
    hidden = model.forward_hidden(ids, document_ids=documents)
    last = torch.tensor([len(s) - 1 for s in seqs], device=device)
    return model.logits(hidden[torch.arange(len(seqs), device=device), last])

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
